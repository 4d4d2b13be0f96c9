package autodiff

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestBinaryElementwise(t *testing.T) {
	requireORT(t)
	pos := uniform(0.5, 2)
	cases := []struct {
		op         string
		a, b       []int64
		genA, genB func(*rand.Rand) float64
		both       bool // differentiate b too
	}{
		{op: "Add", a: i64s(2, 3, 4), b: i64s(4), both: true},
		{op: "Add", a: i64s(2, 1, 4), b: i64s(3, 1), both: true},
		{op: "Sub", a: i64s(3, 1), b: i64s(2, 3, 4), both: true},
		{op: "Mul", a: i64s(2, 3, 4), b: i64s(1, 3, 1), both: true},
		{op: "Mul", a: i64s(2, 3), b: i64s(), both: true},
		{op: "Div", a: i64s(2, 3), b: i64s(3), genB: awayFromZero(0.5, 2), both: true},
		{op: "Pow", a: i64s(2, 3), b: i64s(3), genA: pos, genB: uniform(-2, 2), both: true},
		{op: "Sum", a: i64s(2, 3), b: i64s(1, 3), both: true},
		{op: "Mul", a: i64s(2, 3), b: i64s(2, 3)}, // b frozen
	}
	for _, c := range cases {
		t.Run(c.op+shapeName(c.a, c.b), func(t *testing.T) {
			forModes(t, []int64{11, 17}, allModes, func(t *testing.T, opset int64, mode declMode) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				a := g.param("a", c.a, c.genA)
				var b string
				if c.both {
					b = g.param("b", c.b, c.genB)
				} else {
					b = g.input("b", c.b, c.genB)
				}
				g.check(g.node(c.op, []string{a, b}))
			})
		})
	}
}

func shapeName(shapes ...[]int64) string {
	s := ""
	for _, sh := range shapes {
		s += "_"
		for i, d := range sh {
			if i > 0 {
				s += "x"
			}
			s += string(rune('0' + d))
		}
	}
	return s
}

func TestUnaryElementwise(t *testing.T) {
	requireORT(t)
	kink := awayFromZero(0.2, 1.5)
	cases := []struct {
		op    string
		gen   func(*rand.Rand) float64
		dt    dtype.Type
		attrs []*onnxpb.AttributeProto
	}{
		{op: "Neg"}, {op: "Identity"}, {op: "Exp"}, {op: "Tanh"}, {op: "Sigmoid"},
		// ONNX Runtime's CPU Sin, Cos and Erf have float32 kernels only.
		{op: "Sin", dt: dtype.Float32}, {op: "Cos", dt: dtype.Float32},
		{op: "Sqrt", gen: uniform(0.3, 2)},
		{op: "Log", gen: uniform(0.3, 2)},
		{op: "Reciprocal", gen: kink},
		{op: "Relu", gen: kink},
		{op: "Abs", gen: kink},
		{op: "LeakyRelu", gen: kink, attrs: []*onnxpb.AttributeProto{graph.AttrFloat("alpha", 0.2)}},
		{op: "Erf", dt: dtype.Float32},
	}
	for _, c := range cases {
		t.Run(c.op, func(t *testing.T) {
			forModes(t, []int64{17}, []declMode{declStatic, declUnranked}, func(t *testing.T, opset int64, mode declMode) {
				dt := c.dt
				if dt == dtype.Undefined {
					dt = dtype.Float64
				}
				g := newTestGraph(t, opset, dt, mode)
				x := g.param("x", i64s(2, 3), c.gen)
				g.check(g.node(c.op, []string{x}, c.attrs...))
			})
		})
	}
}

func TestPowConstantExponent(t *testing.T) {
	requireORT(t)
	for _, exp := range []float64{2, 3, 0.5, 1} {
		g := newTestGraph(t, 11, dtype.Float64, declStatic)
		x := g.param("x", i64s(2, 3), uniform(0.3, 2))
		g.check(g.node("Pow", []string{x, g.floats(nil, exp)}))
	}
}

func TestWhere(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{11, 17}, allModes, func(t *testing.T, opset int64, mode declMode) {
		g := newTestGraph(t, opset, dtype.Float64, mode)
		a := g.param("a", i64s(2, 3), nil)
		b := g.param("b", i64s(3), nil)
		c := g.node("Greater", []string{g.input("c", i64s(2, 1, 3), nil), g.floats(nil, 0)})
		g.check(g.node("Where", []string{c, a, b}))
	})
}

func TestCast(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 17, dtype.Float32, declStatic)
	x := g.param("x", i64s(2, 3), nil)
	y := g.node("Cast", []string{x}, graph.AttrInt("to", int64(dtype.Float64)))
	y = g.node("Mul", []string{y, y})
	g.check(g.node("Cast", []string{y}, graph.AttrInt("to", int64(dtype.Float32))))
}

func TestDropout(t *testing.T) {
	requireORT(t)
	t.Run("inference", func(t *testing.T) {
		g := newTestGraph(t, 17, dtype.Float64, declStatic)
		x := g.param("x", i64s(2, 3), nil)
		g.check(g.node("Dropout", []string{x, g.floats(nil, 0.3)}))
	})
	t.Run("opset11", func(t *testing.T) {
		g := newTestGraph(t, 11, dtype.Float64, declStatic)
		x := g.param("x", i64s(2, 3), nil)
		g.check(g.node("Dropout", []string{x}, graph.AttrFloat("ratio", 0.3)))
	})
	t.Run("training", func(t *testing.T) {
		// A random mask cannot be checked by finite differences, but with
		// ratio 0 in training mode the mask keeps everything and the scale
		// is 1, which still runs the masked path of the rule.
		g := newTestGraph(t, 17, dtype.Float64, declStatic)
		x := g.param("x", i64s(2, 3), nil)
		on := g.m.UniqueName("training_mode")
		g.m.AddInitializer(&onnxpb.TensorProto{Name: on, DataType: int32(dtype.Bool), Dims: nil, RawData: []byte{1}})
		outs := g.nodeN("", "Dropout", []string{x, g.floats(nil, 0), on}, 1)
		tm := g.check(outs[0])
		found := false
		for _, n := range tm.Graph().Node {
			if n.OpType == "Dropout" && len(n.Output) == 2 {
				found = true
			}
		}
		if !found {
			t.Errorf("the training graph's Dropout has no mask output")
		}
	})
	t.Run("training_mode_input", func(t *testing.T) {
		// LoRA dropout as package rewrite injects it: training_mode is a
		// graph input (here fed true) and the mask is an output.
		g := newTestGraph(t, 17, dtype.Float64, declSymbolic)
		x := g.param("x", i64s(2, 3), nil)
		g.m.AddInput(graph.TensorInfo("training_mode", dtype.Bool, nil))
		g.feeds["training_mode"] = &feed{dims: nil, i: []int64{1}, elem: dtype.Bool}
		outs := g.nodeN("", "Dropout", []string{x, g.floats(nil, 0), "training_mode"}, 2)
		g.check(outs[0])
	})
	t.Run("opset11_random_mask", func(t *testing.T) {
		// Before opset 12 the rewrite builds dropout from
		// RandomUniformLike(x): no gradient flows into the mask, so the op
		// needs no rule. Rate 0 keeps every element.
		g := newTestGraph(t, 11, dtype.Float64, declStatic)
		x := g.param("x", i64s(2, 3), nil)
		u := g.node("RandomUniformLike", []string{x}, graph.AttrInt("dtype", int64(dtype.Float64)))
		keep := g.node("Cast", []string{g.node("Not", []string{g.node("Less", []string{u, g.floats(nil, 0)})})}, graph.AttrInt("to", int64(dtype.Float64)))
		g.check(g.node("Mul", []string{g.node("Tanh", []string{x}), keep}))
	})
}

func TestUnrankedBeforeOpset13(t *testing.T) {
	g := newTestGraph(t, 11, dtype.Float64, declUnranked)
	a := g.param("a", i64s(2, 3), nil)
	y := g.node("Add", []string{a, g.input("b", i64s(3), nil)})
	loss := g.node("ReduceSum", []string{y}, graph.AttrInt("keepdims", 0))
	_, err := Build(g.m, loss, g.params)
	if err == nil || !strings.Contains(err.Error(), "ranks are unknown") {
		t.Errorf("Build: got error %v, want one about unknown ranks", err)
	}
}

func TestMaxMinClip(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{11, 13}, []declMode{declStatic, declSymbolic}, func(t *testing.T, opset int64, mode declMode) {
		for _, op := range []string{"Max", "Min"} {
			t.Run(op, func(t *testing.T) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				a := g.param("a", i64s(2, 3), nil)
				b := g.param("b", i64s(3), nil)
				g.check(g.node(op, []string{a, b}))
			})
		}
		t.Run("Clip", func(t *testing.T) {
			// ONNX Runtime's CPU Clip-11 is float32 only.
			g := newTestGraph(t, opset, dtype.Float32, mode)
			// Values keep clear of the bounds ±0.5, where the derivative jumps.
			inner, outer := awayFromZero(0.1, 0.4), awayFromZero(0.7, 1)
			x := g.param("x", i64s(2, 5), func(r *rand.Rand) float64 {
				if r.IntN(2) == 0 {
					return inner(r)
				}
				return outer(r)
			})
			g.check(g.node("Clip", []string{x, g.floats(nil, -0.5), g.floats(nil, 0.5)}))
		})
		t.Run("Softplus", func(t *testing.T) {
			// ONNX Runtime's CPU Softplus is float32 only.
			g := newTestGraph(t, opset, dtype.Float32, mode)
			g.check(g.node("Softplus", []string{g.param("x", i64s(2, 3), nil)}))
		})
	})
}
