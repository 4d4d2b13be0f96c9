package autodiff

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestRecompute builds a LLaMA's gradients with and without recomputation
// and checks that recomputation (1) takes the SiLU's sigmoids and the
// RMSNorm's divisions off the backward pass's reads, (2) gives the same
// loss and gradients bit for bit, and (3) survives ONNX Runtime's graph
// optimizations: its common-subexpression pass must not merge the copies
// back into the forward nodes, or nothing would be saved.
func TestRecompute(t *testing.T) {
	requireORT(t)
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	params := []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"}
	g := realGraph(t, m, params...)
	g.rng = rand.New(rand.NewPCG(5, 5))
	feedModel(g, int64(c.VocabSize))
	loss := g.node("ReduceSum", []string{g.node("Mul", []string{"logits", "logits"})}, graph.AttrInt("keepdims", 0))

	forwardReads := map[string]int{} // forward value -> forward readers
	watched := map[string]string{}   // the values recomputation must take over
	for _, n := range g.m.Graph().Node {
		for _, in := range n.Input {
			forwardReads[in]++
		}
		if n.OpType == "Sigmoid" || n.OpType == "Div" {
			watched[n.Output[0]] = n.OpType
		}
	}
	if len(watched) < 4 {
		t.Fatalf("only %d sigmoids and divisions in the model", len(watched))
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
	readOff := 0
	for v, op := range watched {
		if n := backwardReads(on, v); n > 0 {
			t.Errorf("with recomputation, %d backward nodes still read the forward %s output %s", n, op, v)
		}
		readOff += backwardReads(off, v)
	}
	if readOff == 0 {
		t.Fatal("without recomputation no backward node reads a sigmoid or division: the test shows nothing")
	}

	outs := []string{loss}
	for _, p := range params {
		outs = append(outs, GradName(p))
	}
	run := func(tm *graph.Model) map[string]*rt.Tensor {
		res, err := g.session(tm).Run(g.tensors("", 0, 0), outs)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := run(on), run(off)
	for _, o := range outs {
		x, y := a[o].Float32(), b[o].Float32()
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s[%d]: %v with recomputation, %v without", o, i, x[i], y[i])
			}
		}
	}

	// What ONNX Runtime runs after its optimizations: the copies are there.
	opt := filepath.Join(t.TempDir(), "optimized.onnx")
	bytes, err := on.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(bytes, rt.WithIntraOpThreads(1), rt.WithOptimizedModelPath(opt))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	om, err := graph.Load(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer om.Close()
	// Each forward sigmoid has its copy, under the recompute scope.
	fwd, copies := 0, 0
	for _, n := range g.m.Graph().Node {
		if n.OpType == "Sigmoid" {
			fwd++
		}
	}
	for _, n := range om.Graph().Node {
		if n.OpType == "Sigmoid" && strings.HasPrefix(n.Name, "recompute/") {
			copies++
		}
	}
	if copies != fwd {
		t.Errorf("ONNX Runtime's optimized graph has %d recomputed Sigmoid nodes for %d in the forward pass: copies were merged away", copies, fwd)
	}
}

// TestRecomputeSkipsConstants checks that a cheap node of constants alone
// (here a Cast of a frozen weight, as train's float16 upcast makes) is not
// copied into the backward pass: ONNX Runtime folds it, and would fold a
// copy into a second constant as large as the weight. The gradient still
// checks against finite differences.
func TestRecomputeSkipsConstants(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 17, graph.Float32, declStatic)
	x := g.param("x", i64s(3, 4), nil)
	w := g.floats(i64s(4, 5), 0.5, -1, 0.25, 2, -0.75, 1, 0.1, -0.2, 0.3, 1.5, -1.25, 0.4, 0.6, -0.9, 0.8, -0.3, 1.1, -0.6, 0.7, 0.2)
	w32 := g.node("Cast", []string{w}, graph.AttrInt("to", int64(graph.Float32)))
	y := g.node("Sigmoid", []string{g.node("MatMul", []string{x, w32})})
	tm := g.check(y)
	for _, n := range tm.Graph().Node {
		if strings.HasPrefix(n.Name, "recompute/") && n.OpType == "Cast" {
			t.Errorf("the Cast of a constant was copied into the backward pass: %s", n.Name)
		}
	}
}
