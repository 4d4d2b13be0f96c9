package autodiff

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// TestRecomputeAttentionProbabilities checks that the default
// recomputation makes each layer's attention probabilities again in the
// backward pass, from the q and k that it keeps anyway (q·kᵀ over a
// head's width, the mask, the softmax), instead of keeping them, where
// both q and k take gradients; that the loss and gradients stay bit for
// bit those without recomputation; and that ONNX Runtime's optimizations
// leave the copies in place. Layer 0's k takes no gradient (nothing
// below it trains), so its q is not kept, and its probabilities are.
func TestRecomputeAttentionProbabilities(t *testing.T) {
	requireORT(t)
	c := models.LlamaTiny()
	c.Layers = 3
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	var params []string
	for l := range c.Layers {
		for _, p := range []string{"q_proj", "v_proj"} {
			params = append(params, "model.layers."+string(rune('0'+l))+".self_attn."+p+".weight")
		}
	}
	g := realGraph(t, m, params...)
	g.rng = rand.New(rand.NewPCG(3, 3))
	feedModel(g, int64(c.VocabSize))
	loss := g.node("ReduceSum", []string{g.node("Mul", []string{"logits", "logits"})}, graph.AttrInt("keepdims", 0))

	forwardReads := map[string]int{}
	probs := map[string]string{} // softmax output -> its layer
	for _, n := range g.m.Graph().Node {
		for _, in := range n.Input {
			forwardReads[in]++
		}
		if n.OpType == "Softmax" {
			if m := layerScope.FindStringSubmatch(n.Name); m != nil {
				probs[n.Output[0]] = m[3]
			}
		}
	}
	if len(probs) != c.Layers {
		t.Fatalf("%d attention softmaxes in %d layers", len(probs), c.Layers)
	}
	on, err := Build(g.m, loss, params)
	if err != nil {
		t.Fatal(err)
	}
	off, err := Build(g.m, loss, params, WithRecompute(false))
	if err != nil {
		t.Fatal(err)
	}
	backwardReads := func(tm *graph.Model, v string) int { return len(tm.Consumers(v)) - forwardReads[v] }
	for v, layer := range probs {
		if n := backwardReads(off, v); n == 0 {
			t.Errorf("layer %s: without recomputation no backward node reads its probabilities: the test shows nothing", layer)
		}
		n := backwardReads(on, v)
		switch {
		case layer == "0" && n == 0:
			t.Errorf("layer 0: its probabilities were recomputed, but its q is not kept")
		case layer != "0" && n > 0:
			t.Errorf("layer %s: %d backward nodes still read the forward probabilities %s", layer, n, v)
		}
	}

	sameLossAndGradients(t, g, loss, params, on, off)
	if got := optimizedCopies(t, on, "Softmax"); got != c.Layers-1 {
		t.Errorf("ONNX Runtime's optimized graph has %d recomputed softmaxes, want %d", got, c.Layers-1)
	}
	for _, n := range on.Graph().Node {
		if strings.HasPrefix(n.Name, "recompute/") && n.OpType == "MatMul" && len(n.Input) == 2 && on.Initializer(n.Input[1]) != nil {
			t.Errorf("the default pass recomputed a product with a weight: %s", n.Name)
		}
	}
}
