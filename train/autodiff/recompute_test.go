package autodiff

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
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
	products, err := Build(g.m, loss, params, WithRecomputeProducts(true))
	if err != nil {
		t.Fatal(err)
	}
	backwardReads := func(tm *graph.Model, v string) int { return len(tm.Consumers(v)) - forwardReads[v] }
	readOff := 0
	for v, op := range watched {
		for name, tm := range map[string]*graph.Model{"recomputation": on, "recomputed products": products} {
			if n := backwardReads(tm, v); n > 0 {
				t.Errorf("with %s, %d backward nodes still read the forward %s output %s", name, n, op, v)
			}
		}
		readOff += backwardReads(off, v)
	}
	// With products, the MLP's gate and up projections are recomputed too.
	for _, n := range g.m.Graph().Node {
		if n.OpType != "MatMul" || !strings.Contains(n.Name, "mlp/gate_proj") && !strings.Contains(n.Name, "mlp/up_proj") ||
			slices.Contains(params, n.Input[1]) { // a trained weight: not a product with a frozen one
			continue
		}
		if k := backwardReads(on, n.Output[0]); k == 0 {
			t.Errorf("without products the backward pass does not read %s: the test shows nothing", n.Output[0])
		}
		if k := backwardReads(products, n.Output[0]); k > 0 {
			t.Errorf("with recomputed products, %d backward nodes still read %s", k, n.Output[0])
		}
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
	a, b, p := run(on), run(off), run(products)
	for _, o := range outs {
		x, y, z := a[o].Float32(), b[o].Float32(), p[o].Float32()
		for i := range x {
			if x[i] != y[i] || z[i] != y[i] {
				t.Fatalf("%s[%d]: %v with recomputation, %v with products, %v without", o, i, x[i], z[i], y[i])
			}
		}
	}

	// What ONNX Runtime runs after its optimizations: the copies are there.
	// Each forward sigmoid has its copy under the recompute scope, and with
	// products so does each frozen gate and up projection.
	fwdSigmoids, fwdProducts := 0, 0
	for _, n := range g.m.Graph().Node {
		switch {
		case n.OpType == "Sigmoid":
			fwdSigmoids++
		case n.OpType == "MatMul" && (strings.Contains(n.Name, "mlp/gate_proj") || strings.Contains(n.Name, "mlp/up_proj")) && !slices.Contains(params, n.Input[1]):
			fwdProducts++
		}
	}
	if got := optimizedCopies(t, on, "Sigmoid"); got != fwdSigmoids {
		t.Errorf("ONNX Runtime's optimized graph has %d recomputed Sigmoid nodes for %d in the forward pass: copies were merged away", got, fwdSigmoids)
	}
	// ONNX Runtime may fuse a recomputed MatMul into FusedMatMul or Gemm.
	got := optimizedCopies(t, products, "MatMul") + optimizedCopies(t, products, "FusedMatMul") + optimizedCopies(t, products, "Gemm")
	if fwdProducts == 0 || got < fwdProducts {
		t.Errorf("ONNX Runtime's optimized graph has %d recomputed products for %d frozen gate and up projections", got, fwdProducts)
	}
}

// optimizedCopies opens a session over tm and counts the nodes of op under
// the recompute scope in the graph that ONNX Runtime runs.
func optimizedCopies(t *testing.T, tm *graph.Model, op string) int {
	t.Helper()
	opt := filepath.Join(t.TempDir(), "optimized.onnx")
	b, err := tm.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1), rt.WithOptimizedModelPath(opt))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	om, err := graph.Load(opt)
	if err != nil {
		t.Fatal(err)
	}
	defer om.Close()
	k := 0
	for _, n := range om.Graph().Node {
		if n.OpType == op && strings.HasPrefix(n.Name, "recompute/") {
			k++
		}
	}
	return k
}

// TestRecomputeSkipsConstants checks that a cheap node of constants alone
// (here a Cast of a frozen weight, as train's float16 upcast makes) is not
// copied into the backward pass: ONNX Runtime folds it, and would fold a
// copy into a second constant as large as the weight. The gradient still
// checks against finite differences.
func TestRecomputeSkipsConstants(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 17, dtype.Float32, declStatic)
	x := g.param("x", i64s(3, 4), nil)
	w := g.floats(i64s(4, 5), 0.5, -1, 0.25, 2, -0.75, 1, 0.1, -0.2, 0.3, 1.5, -1.25, 0.4, 0.6, -0.9, 0.8, -0.3, 1.1, -0.6, 0.7, 0.2)
	w32 := g.node("Cast", []string{w}, graph.AttrInt("to", int64(dtype.Float32)))
	y := g.node("Sigmoid", []string{g.node("MatMul", []string{x, w32})})
	tm := g.check(y)
	for _, n := range tm.Graph().Node {
		if strings.HasPrefix(n.Name, "recompute/") && n.OpType == "Cast" {
			t.Errorf("the Cast of a constant was copied into the backward pass: %s", n.Name)
		}
	}
}

// sameLossAndGradients runs the loss and the gradients of params through
// g's feeds on the graph built with recomputation (on) and without (off),
// and fails unless they agree bit for bit.
func sameLossAndGradients(t *testing.T, g *testGraph, loss string, params []string, on, off *graph.Model) {
	t.Helper()
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
}
