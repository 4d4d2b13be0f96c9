package autodiff

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// emitter adds nodes to the training graph, in the form that the model's
// default-domain opset accepts, and keeps shape inference current for what
// it adds. Rules report trouble through fail; the first failure sticks and
// Build returns it after the rule.
//
// Names, nodes and constants come from a graph.Builder: a node of op Op
// is named scope+"/"+Op, its outputs scope+"/"+Op+"_output_"+i, and
// constants autodiff/const/<what they hold>, each made unique. Each
// emitter has a builder of its own, so that constants are shared within
// one pass of Build (decomposing, differentiating, recomputing), not
// across them.
type emitter struct {
	m     *graph.Model
	b     *graph.Builder
	inf   *inferer
	opset int64  // default-domain opset
	scope string // prefix of the names of emitted nodes and values
	err   error

	shapes map[string]string // value -> its shape, as shapeOf made it
	// runOne is the graph input RunOneInput once an emitted node needs it.
	runOne string
	// inputDims says where each named dim of the graph inputs can be
	// read; built on first use.
	inputDims map[string]inputDim
}

func newEmitter(m *graph.Model, inf *inferer, opset int64) *emitter {
	b := graph.NewBuilder(m, graph.BuilderOptions{
		Outputs:        graph.OutputsAfterOp,
		ConstantPrefix: "autodiff/const/",
		OnInitializer:  func(t *onnxpb.TensorProto) { inf.record(t.Name, *inf.fromTensor(t)) },
	})
	return &emitter{m: m, b: b, inf: inf, opset: opset, shapes: map[string]string{}}
}

// fail records an error about the node being differentiated.
func (e *emitter) fail(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf(format, args...)
	}
}

// emit adds a node with nout outputs and returns their names.
func (e *emitter) emit(domain, op string, inputs []string, nout int, attrs ...*onnxpb.AttributeProto) []string {
	n := e.b.At(e.scope).Node(domain, op, inputs, nout, attrs...)
	e.inf.node(n)
	return n.Output
}

// keepOutput returns output i of the forward node n, first adding it,
// named after n and what, with the given info, when the forward did not
// ask for it (for a mask or log-probabilities that the rule needs).
func (e *emitter) keepOutput(n *onnxpb.NodeProto, i int, what string, info tinfo) string {
	if len(n.Output) > i && n.Output[i] != "" {
		return n.Output[i]
	}
	name := e.b.KeepOutput(n, i, nodeScope(n)+"/"+what)
	e.inf.record(name, info)
	return name
}

// op adds a default-domain node with one output and returns its name.
func (e *emitter) op(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return e.emit("", op, inputs, 1, attrs...)[0]
}

func (e *emitter) add(a, b string) string { return e.op("Add", []string{a, b}) }
func (e *emitter) sub(a, b string) string { return e.op("Sub", []string{a, b}) }
func (e *emitter) mul(a, b string) string { return e.op("Mul", []string{a, b}) }
func (e *emitter) div(a, b string) string { return e.op("Div", []string{a, b}) }
func (e *emitter) neg(a string) string    { return e.op("Neg", []string{a}) }

// typeOf returns the element type of v, failing when inference does not
// know it.
func (e *emitter) typeOf(v string) dtype.Type {
	dt := e.inf.get(v).elem
	if dt == dtype.Undefined {
		e.fail("element type of %q is unknown", v)
		return dtype.Float32
	}
	return dt
}

func (e *emitter) shape(v string) shape { return e.inf.get(v).shape }

// scalar returns a rank-0 constant of element type dt.
func (e *emitter) scalar(v float64, dt dtype.Type) string { return e.b.Scalar(dt, v) }

// ints returns a 1-D int64 constant.
func (e *emitter) ints(vs ...int64) string { return e.b.Int64s(vs...) }

// int0 returns a rank-0 int64 constant.
func (e *emitter) int0(v int64) string { return e.b.Int64(v) }

// oneHotValues returns the float32 [off, on] = [0, 1] values input of
// OneHot.
func (e *emitter) oneHotValues() string {
	return e.b.Constant("onehot_values_float", graph.NewFloat32Tensor("", dtype.Float32, []int64{2}, []float32{0, 1}))
}

// shapeOf returns v's shape as a 1-D int64 tensor, emitted once per
// value. Where inference knows each dim as a number or as a named dim of a
// graph input, the shape is built from constants and the inputs' shapes
// rather than as Shape(v): a Shape(v) in the backward pass would keep v,
// a forward activation, alive until then, which for a dynamic-shaped
// model is hundreds of megabytes of values that the gradient does not
// otherwise need.
func (e *emitter) shapeOf(v string) string {
	if s, ok := e.shapes[v]; ok {
		return s
	}
	s := e.shapeFromInputs(v)
	if s == "" {
		s = e.op("Shape", []string{v})
	}
	e.shapes[v] = s
	return s
}

// shapeFromInputs builds v's shape from constants and the shapes of the
// graph inputs, or returns "" when a dim of v is neither a number nor a
// named dim of an input.
func (e *emitter) shapeFromInputs(v string) string {
	sh := e.shape(v)
	if !sh.ok || sh.rank() == 0 {
		return ""
	}
	if e.inputDims == nil {
		e.inputDims = map[string]inputDim{}
		for _, in := range e.m.Graph().Input {
			if e.m.Initializer(in.Name) != nil {
				continue
			}
			for i, d := range e.inf.get(in.Name).shape.dims {
				if _, seen := e.inputDims[d.sym]; !seen && strings.HasPrefix(d.sym, "$") {
					e.inputDims[d.sym] = inputDim{in.Name, int64(i)}
				}
			}
		}
	}
	var parts []string
	var run []int64 // static dims not yet emitted
	for _, d := range sh.dims {
		if d.static() {
			run = append(run, d.v)
			continue
		}
		at, ok := e.inputDims[d.sym]
		if !ok || at.input == v {
			return ""
		}
		if len(run) > 0 {
			parts, run = append(parts, e.ints(run...)), nil
		}
		parts = append(parts, e.dimOf(at.input, at.axis))
	}
	if len(run) > 0 {
		parts = append(parts, e.ints(run...))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return e.op("Concat", parts, graph.AttrInt("axis", 0))
}

// inputDim is where a named dim can be read: an axis of a graph input.
type inputDim struct {
	input string
	axis  int64
}

// sizeOf returns the number of elements of v as a rank-0 int64: a
// constant, or the product of shapeOf(v) (see there why not Size(v)).
func (e *emitter) sizeOf(v string) string {
	if n := e.shape(v).numel(); n >= 0 {
		return e.int0(n)
	}
	return e.op("ReduceProd", []string{e.shapeOf(v)}, graph.AttrInt("keepdims", 0))
}

// dimOf returns dimension axis of v as a 1-D int64 tensor of length 1:
// a constant when it is known statically.
func (e *emitter) dimOf(v string, axis int64) string {
	s := e.shape(v)
	if s.ok {
		if a := normAxis(axis, s.rank()); a >= 0 && a < s.rank() && s.dims[a].static() {
			return e.ints(s.dims[a].v)
		}
	}
	return e.op("Gather", []string{e.shapeOf(v), e.ints(axis)}, graph.AttrInt("axis", 0))
}

// reduceSum sums x over axes.
func (e *emitter) reduceSum(x string, axes []int64, keep bool) string {
	return e.reduce("ReduceSum", 13, x, axes, keep)
}

// reduceMean averages x over axes.
func (e *emitter) reduceMean(x string, axes []int64, keep bool) string {
	return e.reduce("ReduceMean", 18, x, axes, keep)
}

// reduce emits a Reduce* op, with axes as an input from opset inputSince.
func (e *emitter) reduce(op string, inputSince int64, x string, axes []int64, keep bool) string {
	kd := int64(0)
	if keep {
		kd = 1
	}
	if e.opset >= inputSince {
		return e.op(op, []string{x, e.ints(axes...)}, graph.AttrInt("keepdims", kd))
	}
	return e.op(op, []string{x}, graph.AttrInts("axes", axes...), graph.AttrInt("keepdims", kd))
}

// unsqueeze inserts size-1 axes.
func (e *emitter) unsqueeze(x string, axes ...int64) string {
	if e.opset >= 13 {
		return e.op("Unsqueeze", []string{x, e.ints(axes...)})
	}
	return e.op("Unsqueeze", []string{x}, graph.AttrInts("axes", axes...))
}

// squeeze drops size-1 axes.
func (e *emitter) squeeze(x string, axes ...int64) string {
	if e.opset >= 13 {
		return e.op("Squeeze", []string{x, e.ints(axes...)})
	}
	return e.op("Squeeze", []string{x}, graph.AttrInts("axes", axes...))
}

// transpose permutes x's axes.
func (e *emitter) transpose(x string, perm ...int64) string {
	return e.op("Transpose", []string{x}, graph.AttrInts("perm", perm...))
}

// cast converts x to element type dt, or returns x when it has that type.
func (e *emitter) cast(x string, dt dtype.Type) string {
	if e.inf.get(x).elem == dt {
		return x
	}
	return e.op("Cast", []string{x}, graph.AttrInt("to", int64(dt)))
}

// sameShape reports whether a and b are known to have the same shape.
func sameShape(a, b shape) bool {
	if !a.ok || !b.ok || len(a.dims) != len(b.dims) {
		return false
	}
	for i := range a.dims {
		if !a.dims[i].eq(b.dims[i]) {
			return false
		}
	}
	return true
}

// reshapeLike gives g the shape of x (they have as many elements).
func (e *emitter) reshapeLike(g, x string) string {
	if sameShape(e.shape(g), e.shape(x)) {
		return g
	}
	out := e.op("Reshape", []string{g, e.shapeOf(x)})
	e.inf.setShape(out, e.shape(x))
	return out
}

// zerosLike returns zeros with x's shape and element type dt.
func (e *emitter) zerosLike(x string, dt dtype.Type) string {
	out := e.op("ConstantOfShape", []string{e.shapeOf(x)}, graph.AttrTensor("value", graph.NewFloatTensor("", dt, []int64{1}, []float64{0})))
	e.inf.setShape(out, e.shape(x))
	return out
}

// sum adds up gradients of the same shape.
func (e *emitter) sum(parts []string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	return e.op("Sum", parts)
}

// unbroadcast sums g, the gradient of a broadcast result, down to the
// shape of x. Where static shapes settle which axes were broadcast, the
// reduction is static. Otherwise the axes are worked out in the graph.
func (e *emitter) unbroadcast(g, x string) string {
	gs, xs := e.shape(g), e.shape(x)
	if !gs.ok || !xs.ok {
		return e.unbroadcastDynamic(g, x)
	}
	lead := gs.rank() - xs.rank()
	if lead < 0 {
		e.fail("gradient %q has lower rank than %q", g, x)
		return g
	}
	var axes []int64
	var ambiguous []int
	for i := 0; i < lead; i++ {
		axes = append(axes, int64(i))
	}
	for i, xd := range xs.dims {
		gd := gs.dims[lead+i]
		switch {
		case xd.is(1):
			if !gd.is(1) {
				axes = append(axes, int64(lead+i))
			}
		case xd.eq(gd), xd.static():
		default:
			ambiguous = append(ambiguous, i)
		}
	}
	if len(ambiguous) > 0 && e.opset >= 13 {
		return e.unbroadcastDynamic(g, x)
	}
	r := g
	if len(axes) > 0 {
		r = e.reduceSum(g, axes, true)
		if lead > 0 {
			r = e.squeeze(r, axes[:lead]...)
		}
	}
	for _, i := range ambiguous {
		// Before opset 13 the axes of ReduceSum must be constant: sum
		// axis i anyway, and keep the sum only where x's dim is 1.
		d := e.dimOf(x, int64(i))
		one := e.op("Equal", []string{e.op("Squeeze", []string{d}), e.int0(1)})
		s := e.reduceSum(r, []int64{int64(i)}, true)
		w := e.op("Where", []string{one, s, r})
		r = e.op("Slice", []string{w, e.ints(0), d, e.ints(int64(i))})
	}
	if r != g {
		e.inf.setShape(r, xs)
	}
	return r
}

// unbroadcastDynamic works out in the graph which axes of g were
// broadcast from x: Shape, Equal, NonZero, then ReduceSum with the axes as
// an input (opset 13) and a Reshape to Shape(x).
func (e *emitter) unbroadcastDynamic(g, x string) string {
	if e.opset < 13 {
		e.fail("cannot reduce the gradient %q to the shape of %q: their ranks are unknown and opset %d has no ReduceSum with axes as an input", g, x, e.opset)
		return g
	}
	sx, sg := e.shapeOf(x), e.op("Shape", []string{g})
	diff := e.sub(e.op("Size", []string{sg}), e.op("Size", []string{sx}))
	ones := e.op("ConstantOfShape", []string{e.op("Reshape", []string{diff, e.ints(1)})},
		graph.AttrTensor("value", graph.NewInt64Tensor("", []int64{1}, []int64{1})))
	padded := e.op("Concat", []string{ones, sx}, graph.AttrInt("axis", 0))
	differ := e.op("Not", []string{e.op("Equal", []string{padded, sg})})
	axes := e.op("Reshape", []string{e.op("NonZero", []string{differ}), e.ints(-1)})
	red := e.op("ReduceSum", []string{g, axes}, graph.AttrInt("keepdims", 1), graph.AttrInt("noop_with_empty_axes", 1))
	out := e.op("Reshape", []string{red, sx})
	e.inf.setShape(out, e.shape(x))
	return out
}
