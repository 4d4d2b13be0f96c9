package autodiff

import (
	"math/rand/v2"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// TestRecomputeExpansions checks that the backward pass of a LLaMA with
// grouped-query attention reads no key or value that repeat_kv expanded
// (the Expand, and the movement nodes after it), where without
// recomputation it does, and that the loss and gradients are the same
// bit for bit.
func TestRecomputeExpansions(t *testing.T) {
	requireORT(t)
	c := models.LlamaTiny()
	c.NoCache = true
	if c.KVHeads >= c.Heads {
		t.Fatalf("LlamaTiny has %d heads over %d key/value heads: no expansion to test", c.Heads, c.KVHeads)
	}
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	params := []string{"model.layers.0.self_attn.v_proj.weight", "model.layers.1.self_attn.q_proj.weight"}
	g := realGraph(t, m, params...)
	g.rng = rand.New(rand.NewPCG(7, 7))
	feedModel(g, int64(c.VocabSize))
	loss := g.node("ReduceSum", []string{g.node("Mul", []string{"logits", "logits"})}, graph.AttrInt("keepdims", 0))

	forwardReads := map[string]int{}
	expanded := map[string]bool{} // outputs of an Expand and of the movement nodes after it
	for _, n := range g.m.Graph().Node {
		for _, in := range n.Input {
			forwardReads[in]++
		}
		if n.OpType == "Expand" || movement[n.OpType] && len(n.Input) > 0 && expanded[n.Input[0]] {
			expanded[n.Output[0]] = true
		}
	}
	on, err := Build(g.m, loss, params)
	if err != nil {
		t.Fatal(err)
	}
	off, err := Build(g.m, loss, params, WithRecompute(false))
	if err != nil {
		t.Fatal(err)
	}
	readOff := 0
	for v := range expanded {
		if n := len(on.Consumers(v)) - forwardReads[v]; n > 0 {
			t.Errorf("%d backward nodes still read the expanded %s", n, v)
		}
		readOff += len(off.Consumers(v)) - forwardReads[v]
	}
	if readOff == 0 {
		t.Fatalf("without recomputation no backward node reads any of the %d expanded values: the test shows nothing", len(expanded))
	}

	sameLossAndGradients(t, g, loss, params, on, off)
}
