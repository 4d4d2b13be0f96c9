package autodiff

import (
	"errors"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// linearModel returns y = x·W + b with loss = ReduceSum(y), where W and b
// are initializers.
func linearModel(t *testing.T) (*testGraph, string) {
	g := newTestGraph(t, 17, dtype.Float32, declSymbolic)
	x := g.input("x", i64s(2, 3), nil)
	g.m.AddInitializer(graph.NewFloatTensor("W", g.dt, i64s(3, 4), make([]float64, 12)))
	g.m.AddInitializer(graph.NewFloatTensor("b", g.dt, i64s(4), make([]float64, 4)))
	y := g.node("Add", []string{g.node("MatMul", []string{x, "W"}), "b"})
	return g, g.node("ReduceSum", []string{y}, graph.AttrInt("keepdims", 0))
}

func TestBuildErrors(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(g *testGraph, loss string) (string, []string)
		want   string
		noRule bool
	}{
		{"unknown_param", func(g *testGraph, loss string) (string, []string) { return loss, []string{"nope"} },
			`parameter "nope" is neither an initializer nor a graph input`, false},
		{"twice", func(g *testGraph, loss string) (string, []string) { return loss, []string{"W", "W"} },
			`parameter "W" is listed twice`, false},
		{"int_param", func(g *testGraph, loss string) (string, []string) {
			g.m.AddInitializer(graph.NewInt64Tensor("steps", nil, []int64{1}))
			return loss, []string{"steps"}
		}, `parameter "steps" is int64`, false},
		{"unknown_loss", func(g *testGraph, loss string) (string, []string) { return "nope", []string{"W"} },
			`"nope" is not a value of the model`, false},
		{"int_loss", func(g *testGraph, loss string) (string, []string) {
			return g.node("Shape", []string{loss}), []string{"W"}
		}, "is int64, not a floating-point value", false},
		{"no_rule", func(g *testGraph, loss string) (string, []string) {
			y := g.nodeN("example.org", "Mystery", []string{loss}, 1)[0]
			return y, []string{"W"}
		}, `no gradient rule for op example.org:Mystery of node "Mystery_`, true},
		{"no_rule_names_the_params", func(g *testGraph, loss string) (string, []string) {
			// b reaches the Mystery node, W does not (it comes after).
			g.m.AddInitializer(graph.NewFloatTensor("c", g.dt, i64s(4), make([]float64, 4)))
			g.m.AddInitializer(graph.NewFloatTensor("W2", g.dt, i64s(4), make([]float64, 4)))
			x := g.m.Producer(loss).Input[0]
			m := g.nodeN("example.org", "Mystery", []string{g.node("Add", []string{x, "c"})}, 1)[0]
			return g.node("ReduceSum", []string{g.node("Mul", []string{m, "W2"})}, graph.AttrInt("keepdims", 0)), []string{"W2", "c", "b"}
		}, `which blocks the gradient of parameters c, b`, true},
		{"decomposition_refused_names_the_params", func(g *testGraph, loss string) (string, []string) {
			x := g.m.Producer(loss).Input[0] // [2, 4]
			q := g.node("Reshape", []string{x, g.ints(i64s(3), 1, 2, 4)})
			y := g.nodeN("com.microsoft", "GroupQueryAttention", []string{q, q, q, "", "", "sl", "tl", "", "", "positions"}, 1,
				graph.AttrInt("num_heads", 1), graph.AttrInt("kv_num_heads", 1))[0]
			return g.node("ReduceSum", []string{y}, graph.AttrInt("keepdims", 0)), []string{"W", "b"}
		}, `, which blocks the gradient of parameters W, b: the position_ids input is not supported`, false},
		{"grad_name_taken", func(g *testGraph, loss string) (string, []string) {
			g.node("Identity", []string{loss})
			g.m.Graph().Node[len(g.m.Graph().Node)-1].Output[0] = "grad.W"
			g.m.Reindex()
			return loss, []string{"W"}
		}, `already has a value "grad.W"`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, loss := linearModel(t)
			l, params := c.edit(g, loss)
			_, err := Build(g.m, l, params)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "autodiff: ") {
				t.Fatalf("got error %v, want one containing %q", err, c.want)
			}
			if errors.Is(err, ErrNoRule) != c.noRule {
				t.Errorf("errors.Is(err, ErrNoRule) = %v, want %v", !c.noRule, c.noRule)
			}
		})
	}
}

// TestNoRuleOffPath: an op without a rule is fine where no gradient flows
// through it.
func TestNoRuleOffPath(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 17, dtype.Float64, declStatic)
	w := g.param("w", i64s(2, 3), nil)
	frozen := g.node("Floor", []string{g.input("x", i64s(2, 3), nil)})
	g.check(g.node("Mul", []string{w, frozen}))
}

// TestUnusedParam: a param that the loss does not read gets zeros.
func TestUnusedParam(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 17, dtype.Float64, declStatic)
	w := g.param("w", i64s(2, 3), nil)
	g.param("unused", i64s(4), nil)
	g.check(g.node("Tanh", []string{w}))
}

func TestWithOutputs(t *testing.T) {
	g, loss := linearModel(t)
	y := g.m.Producer(loss).Input[0]
	tm, err := Build(g.m, loss, []string{"W"}, WithOutputs(y))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range tm.Graph().Output {
		got = append(got, o.Name)
	}
	if want := []string{loss, "grad.W", y}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("outputs: got %v want %v", got, want)
	}
	if _, err := Build(g.m, loss, []string{"W"}, WithOutputs("")); err == nil {
		t.Errorf("WithOutputs(\"\"): no error")
	}
}

// TestPruning: nodes that the loss does not need are dropped, and so are
// the initializers only they read.
func TestPruning(t *testing.T) {
	g, loss := linearModel(t)
	g.m.AddInitializer(graph.NewFloatTensor("other", g.dt, i64s(3), []float64{1, 2, 3}))
	side := g.node("Mul", []string{"x", "other"})
	g.m.AddOutput(graph.TensorInfo(side, g.dt, nil))
	tm, err := Build(g.m, loss, []string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	if tm.Producer(side) != nil || tm.Initializer("other") != nil {
		t.Errorf("the side branch survived pruning")
	}
	if tm.Initializer("W") == nil {
		t.Errorf("frozen W was pruned")
	}
}

// TestUnbroadcastPaths checks which reduction the broadcasting rules emit:
// static axes where shapes are known, computed axes (NonZero) from opset 13
// otherwise, and the per-axis Where+Slice form before opset 13.
func TestUnbroadcastPaths(t *testing.T) {
	cases := []struct {
		opset   int64
		mode    declMode
		want    string
		notWant string
	}{
		{17, declStatic, "ReduceSum", "NonZero"},
		{17, declSymbolic, "NonZero", "Slice"},
		{11, declSymbolic, "Slice", "NonZero"},
	}
	for _, c := range cases {
		g := newTestGraph(t, c.opset, dtype.Float64, c.mode)
		a := g.param("a", i64s(2, 1, 4), nil)
		y := g.node("Add", []string{a, g.input("b", i64s(3, 1), nil)})
		loss := g.node("ReduceSum", []string{y}, graph.AttrInt("keepdims", 0))
		tm, err := Build(g.m, loss, g.params)
		if err != nil {
			t.Fatal(err)
		}
		ops := map[string]bool{}
		for _, n := range tm.Graph().Node {
			if strings.HasPrefix(n.Name, "grad/Add") {
				ops[n.OpType] = true
			}
		}
		if !ops[c.want] || ops[c.notWant] {
			t.Errorf("opset %d %s: gradient ops %v, want %s and no %s", c.opset, c.mode, ops, c.want, c.notWant)
		}
	}
}

func TestSupported(t *testing.T) {
	ops := Supported()
	for _, want := range []string{":MatMul", ":Gemm", ":Softmax", "com.microsoft:MultiHeadAttention", "com.microsoft:RotaryEmbedding"} {
		found := false
		for _, o := range ops {
			found = found || o == want
		}
		if !found {
			t.Errorf("Supported() lacks %s", want)
		}
	}
}
