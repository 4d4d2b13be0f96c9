package autodiff

import (
	"encoding/binary"
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Elementwise ops. Binary ops broadcast, so each input's gradient is
// summed back to the input's shape. Comparisons, logical ops and the
// element-wise ops without a rule are here too, for their inference.

func init() {
	// cheap marks the ops that recomputation may run again in the
	// backward pass.
	const cheap = true
	binary := func(op string, g gradFunc, recompute bool) {
		register("", op, entry{grad: g, infer: inferArith, recompute: recompute})
	}
	binary("Add", gradAdd, cheap)
	binary("Sub", gradSub, cheap)
	binary("Mul", gradMul, cheap)
	binary("Div", gradDiv, cheap)
	binary("Pow", gradPow, false)
	binary("Sum", gradSum, false)
	binary("Max", gradMaxMin("GreaterOrEqual"), false)
	binary("Min", gradMaxMin("LessOrEqual"), false)
	for _, op := range []string{"Mean", "Mod", "PRelu", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor"} {
		binary(op, nil, false)
	}

	unaryOp := func(op string, f func(e *emitter, x, y, g string) string, recompute bool) {
		register("", op, entry{grad: unary(f), infer: inferSame, recompute: recompute})
	}
	unaryOp("Neg", func(e *emitter, x, y, g string) string { return e.neg(g) }, cheap)
	register("", "Identity", entry{grad: unary(func(e *emitter, x, y, g string) string { return g }), infer: inferIdentity})
	unaryOp("Sqrt", func(e *emitter, x, y, g string) string {
		return e.div(e.mul(g, e.scalar(0.5, e.typeOf(x))), y)
	}, cheap)
	unaryOp("Exp", func(e *emitter, x, y, g string) string { return e.mul(g, y) }, cheap)
	unaryOp("Log", func(e *emitter, x, y, g string) string { return e.div(g, x) }, false)
	unaryOp("Reciprocal", func(e *emitter, x, y, g string) string {
		return e.neg(e.mul(g, e.mul(y, y)))
	}, cheap)
	unaryOp("Tanh", func(e *emitter, x, y, g string) string {
		return e.mul(g, e.sub(e.scalar(1, e.typeOf(x)), e.mul(y, y)))
	}, cheap)
	unaryOp("Sigmoid", func(e *emitter, x, y, g string) string {
		return e.mul(g, e.mul(y, e.sub(e.scalar(1, e.typeOf(x)), y)))
	}, cheap)
	unaryOp("Relu", func(e *emitter, x, y, g string) string {
		dt := e.typeOf(x)
		pos := e.op("Greater", []string{x, e.scalar(0, dt)})
		return e.mul(g, e.cast(pos, dt))
	}, cheap)
	register("", "LeakyRelu", entry{grad: func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		x, g := n.Input[0], dy[0]
		dt := e.typeOf(x)
		alpha := float64(graph.FloatAttr(n, "alpha", 0.01))
		pos := e.op("Greater", []string{x, e.scalar(0, dt)})
		return []string{e.op("Where", []string{pos, g, e.mul(g, e.scalar(alpha, dt))})}
	}, infer: inferSame})
	unaryOp("Abs", func(e *emitter, x, y, g string) string {
		return e.mul(g, e.op("Sign", []string{x}))
	}, cheap)
	unaryOp("Erf", func(e *emitter, x, y, g string) string {
		dt := e.typeOf(x)
		return e.mul(g, e.mul(e.scalar(2/math.Sqrt(math.Pi), dt), e.op("Exp", []string{e.neg(e.mul(x, x))})))
	}, cheap)
	unaryOp("Sin", func(e *emitter, x, y, g string) string {
		return e.mul(g, e.op("Cos", []string{x}))
	}, false)
	unaryOp("Cos", func(e *emitter, x, y, g string) string {
		return e.neg(e.mul(g, e.op("Sin", []string{x})))
	}, false)
	unaryOp("Softplus", func(e *emitter, x, y, g string) string {
		return e.mul(g, e.op("Sigmoid", []string{x}))
	}, cheap)
	register("", "Clip", entry{grad: gradClip, diff: []int{0}, infer: inferSame})
	register("", "Cast", entry{grad: gradCast, diff: []int{0}, infer: inferCast, recompute: cheap})
	register("", "Where", entry{grad: gradWhere, diff: []int{1, 2}, infer: inferWhere})
	register("", "Dropout", entry{grad: gradDropout, diff: []int{0}, infer: inferDropout})

	// Without a rule: their outputs have their first input's shape.
	// Round passes its gradient straight through, as quantization-aware
	// training does (its true derivative is zero almost everywhere): the
	// rule of the fake quantization that qdq.go writes for a
	// QuantizeLinear → DequantizeLinear pair on a gradient path.
	register("", "Round", entry{grad: func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		return []string{dy[0]}
	}, infer: inferSame})
	for _, op := range []string{"Floor", "Ceil", "Sign", "Tan", "Atan", "Asin", "Acos",
		"Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "BitwiseNot", "Trilu"} {
		register("", op, entry{infer: inferSame})
	}
	for _, op := range []string{"Not", "IsNaN", "IsInf"} {
		register("", op, entry{infer: inferPredicate})
	}
	for _, op := range []string{"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"} {
		register("", op, entry{infer: inferCompare})
	}
	register("", "CastLike", entry{infer: inferCastLike})
}

// inferArith: a broadcast of every input, with the values of small integer
// tensors worked out for two inputs (arith).
func inferArith(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	var ss []shape
	for i := range n.Input {
		ss = append(ss, f.in(n, i).shape)
	}
	t := &tinfo{elem: f.in(n, 0).elem, shape: f.broadcast(ss...)}
	if len(n.Input) == 2 {
		t.vals = f.arith(n.OpType, f.in(n, 0), f.in(n, 1))
	}
	return one(t)
}

// inferIdentity copies the input, values included.
func inferIdentity(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	return one(&tinfo{elem: x.elem, shape: x.shape, vals: x.vals})
}

// inferPredicate: a boolean of the input's shape (Not, IsNaN, IsInf).
func inferPredicate(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: dtype.Bool, shape: f.in(n, 0).shape})
}

// inferCompare: a boolean broadcast of two inputs.
func inferCompare(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: dtype.Bool, shape: f.broadcast(f.in(n, 0).shape, f.in(n, 1).shape)})
}

// inferCast: the input's shape in type to; integer values stay known
// across integer types.
func inferCast(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	t := &tinfo{elem: dtype.Type(graph.IntAttr(n, "to", 0)), shape: x.shape}
	if isInt(t.elem) && isInt(x.elem) {
		t.vals = x.vals
	}
	return one(t)
}

func inferCastLike(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: f.in(n, 1).elem, shape: f.in(n, 0).shape})
}

// inferWhere: the broadcast of condition and both branches, in the
// branches' type.
func inferWhere(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: f.in(n, 1).elem, shape: f.broadcast(f.in(n, 0).shape, f.in(n, 1).shape, f.in(n, 2).shape)})
}

// inferDropout: the input, and a boolean mask of its shape.
func inferDropout(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	return []*tinfo{{elem: x.elem, shape: x.shape}, {elem: dtype.Bool, shape: x.shape}}
}

// unary makes the rule of a one-input op from its gradient given the
// input x, the output y and the output's gradient g.
func unary(f func(e *emitter, x, y, g string) string) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		if dy[0] == "" {
			return nil
		}
		return []string{f(e, n.Input[0], n.Output[0], dy[0])}
	}
}

func gradAdd(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	out := make([]string, 2)
	for i := range out {
		if need[i] {
			out[i] = e.unbroadcast(dy[0], n.Input[i])
		}
	}
	return out
}

func gradSum(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	out := make([]string, len(n.Input))
	for i := range out {
		if need[i] {
			out[i] = e.unbroadcast(dy[0], n.Input[i])
		}
	}
	return out
}

func gradSub(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	out := make([]string, 2)
	if need[0] {
		out[0] = e.unbroadcast(dy[0], n.Input[0])
	}
	if need[1] {
		out[1] = e.unbroadcast(e.neg(dy[0]), n.Input[1])
	}
	return out
}

func gradMul(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	a, b, g := n.Input[0], n.Input[1], dy[0]
	out := make([]string, 2)
	if need[0] {
		out[0] = e.unbroadcast(e.mul(g, b), a)
	}
	if need[1] {
		out[1] = e.unbroadcast(e.mul(g, a), b)
	}
	return out
}

func gradDiv(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	a, b, y, g := n.Input[0], n.Input[1], n.Output[0], dy[0]
	out := make([]string, 2)
	if need[0] {
		out[0] = e.unbroadcast(e.div(g, b), a)
	}
	if need[1] {
		// d(a/b)/db = -a/b² = -y/b
		out[1] = e.unbroadcast(e.neg(e.div(e.mul(g, y), b)), b)
	}
	return out
}

func gradPow(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	a, b, y, g := n.Input[0], n.Input[1], n.Output[0], dy[0]
	dt := e.typeOf(a)
	out := make([]string, 2)
	if need[0] {
		var d string // dy/da = b·a^(b-1)
		if c, ok := e.constFloat(b); ok {
			switch c {
			case 0:
				d = e.scalar(0, dt)
			case 1:
				d = e.scalar(1, dt)
			case 2:
				d = e.mul(a, e.scalar(2, dt))
			default:
				d = e.mul(e.op("Pow", []string{a, e.scalar(c-1, dt)}), e.scalar(c, dt))
			}
		} else {
			bf := e.cast(b, dt)
			d = e.mul(bf, e.op("Pow", []string{a, e.sub(bf, e.scalar(1, dt))}))
		}
		out[0] = e.unbroadcast(e.mul(g, d), a)
	}
	if need[1] {
		// dy/db = y·ln a
		out[1] = e.unbroadcast(e.mul(g, e.mul(y, e.op("Log", []string{a}))), b)
	}
	return out
}

// constFloat returns the value of a constant scalar (or one-element)
// floating-point or integer tensor.
func (e *emitter) constFloat(name string) (float64, bool) {
	var t *onnxpb.TensorProto
	if t = e.m.Initializer(name); t == nil || e.m.Input(name) != nil {
		p := e.m.Producer(name)
		if p == nil || p.OpType != "Constant" || p.Domain != "" {
			return 0, false
		}
		a := graph.Attr(p, "value")
		if a == nil || a.T == nil {
			if a = graph.Attr(p, "value_float"); a != nil {
				return float64(a.F), true
			}
			return 0, false
		}
		t = a.T
	}
	if graph.NumElements(t.Dims) != 1 {
		return 0, false
	}
	if graph.TypeOf(t).IsFloat() {
		if graph.TypeOf(t) == dtype.Float64 {
			if b, err := e.m.TensorBytes(t); err == nil && len(b) == 8 {
				return math.Float64frombits(binary.LittleEndian.Uint64(b)), true
			}
			return 0, false
		}
		v, err := e.m.Float32s(t)
		if err != nil {
			return 0, false
		}
		return float64(v[0]), true
	}
	v, err := e.m.Int64s(t)
	if err != nil {
		return 0, false
	}
	return float64(v[0]), true
}

// gradMaxMin routes the gradient of Max (or Min) of two inputs to the one
// that was picked, the first on a tie. cmp is GreaterOrEqual for Max.
func gradMaxMin(cmp string) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		if len(n.Input) != 2 {
			e.fail("only two inputs are supported, not %d", len(n.Input))
			return nil
		}
		a, b, g := n.Input[0], n.Input[1], dy[0]
		// GreaterOrEqual and LessOrEqual arrived in opset 12: before, they
		// are Not(Less) and Not(Greater).
		var first string
		switch {
		case e.opset >= 12:
			first = e.op(cmp, []string{a, b})
		case cmp == "GreaterOrEqual":
			first = e.op("Not", []string{e.op("Less", []string{a, b})})
		default:
			first = e.op("Not", []string{e.op("Greater", []string{a, b})})
		}
		zero := e.scalar(0, e.typeOf(a))
		out := make([]string, 2)
		if need[0] {
			out[0] = e.unbroadcast(e.op("Where", []string{first, g, zero}), a)
		}
		if need[1] {
			out[1] = e.unbroadcast(e.op("Where", []string{first, zero, g}), b)
		}
		return out
	}
}

// gradClip passes the gradient where min ≤ x ≤ max (opset 11 and later,
// bounds as inputs).
func gradClip(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	x, g := n.Input[0], dy[0]
	zero := e.scalar(0, e.typeOf(x))
	var keep string
	if lo := inputOr(n, 1); lo != "" {
		keep = e.op("Not", []string{e.op("Less", []string{x, lo})})
	}
	if hi := inputOr(n, 2); hi != "" {
		in := e.op("Not", []string{e.op("Greater", []string{x, hi})})
		if keep == "" {
			keep = in
		} else {
			keep = e.op("And", []string{keep, in})
		}
	}
	if keep == "" {
		return []string{g}
	}
	return []string{e.op("Where", []string{keep, g, zero})}
}

func gradCast(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	dt := e.typeOf(n.Input[0])
	if !dt.IsFloat() {
		return nil
	}
	return []string{e.cast(dy[0], dt)}
}

func gradWhere(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	c, g := n.Input[0], dy[0]
	zero := e.scalar(0, e.typeOf(n.Output[0]))
	out := make([]string, 3)
	if need[1] {
		out[1] = e.unbroadcast(e.op("Where", []string{c, g, zero}), n.Input[1])
	}
	if need[2] {
		out[2] = e.unbroadcast(e.op("Where", []string{c, zero, g}), n.Input[2])
	}
	return out
}

// gradDropout scales the gradient by the mask the forward drew. Dropout
// before opset 12 is the identity in ONNX Runtime, and so is a Dropout
// whose training_mode is absent or constant false.
func gradDropout(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	x, g := n.Input[0], dy[0]
	if e.opset < 12 || len(n.Input) < 3 || n.Input[2] == "" {
		return []string{g}
	}
	if tm, ok := e.constFloat(n.Input[2]); ok && tm == 0 {
		return []string{g}
	}
	dt := e.typeOf(x)
	ratio := e.scalar(0.5, dt)
	if len(n.Input) > 1 && n.Input[1] != "" {
		if r, ok := e.constFloat(n.Input[1]); ok {
			ratio = e.scalar(r, dt)
		} else {
			ratio = e.cast(n.Input[1], dt)
		}
	}
	scale := e.div(e.scalar(1, dt), e.sub(e.scalar(1, dt), ratio))
	if _, ok := e.constFloat(n.Input[2]); !ok {
		scale = e.op("Where", []string{n.Input[2], scale, e.scalar(1, dt)})
	}
	mask := e.keepOutput(n, 1, "mask", tinfo{elem: dtype.Bool, shape: e.shape(x)})
	return []string{e.mul(g, e.mul(e.cast(mask, dt), scale))}
}

// arith applies Add, Sub, Mul or Div to the values of small integer
// tensors, symbolically where it can.
func (f *inferer) arith(op string, a, b *tinfo) []dim {
	if a.vals == nil || b.vals == nil {
		return nil
	}
	n := max(len(a.vals), len(b.vals))
	if (len(a.vals) != n && len(a.vals) != 1) || (len(b.vals) != n && len(b.vals) != 1) {
		return nil
	}
	out := make([]dim, n)
	for i := range out {
		x, y := a.vals[min(i, len(a.vals)-1)], b.vals[min(i, len(b.vals)-1)]
		ok := true
		switch {
		case op == "Add":
			out[i] = f.addDims(x, y, 1)
		case op == "Sub":
			out[i] = f.addDims(x, y, -1)
		case op == "Mul" && y.static():
			out[i], ok = f.scaleDim(x, y.v, 1)
		case op == "Mul" && x.static():
			out[i], ok = f.scaleDim(y, x.v, 1)
		case op == "Div" && y.static() && x.static():
			if y.v == 0 {
				return nil
			}
			out[i] = known(x.v / y.v) // integer division truncates
		case op == "Div" && y.static():
			out[i], ok = f.scaleDim(x, 1, y.v)
		default:
			ok = false
		}
		if !ok {
			out[i] = f.freshDim()
		}
	}
	return out
}
