package autodiff

import (
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// dim is one dimension of a symbolic shape, or one element of a small
// integer tensor such as a shape: a known value, or a symbol that stands
// for a value known only at run time. Two dims with the same symbol are
// equal; a value that nobody named gets a fresh symbol of its own, so the
// symbol is never empty.
type dim struct {
	v   int64  // the value, when sym is empty
	sym string // the symbol of an unknown value
}

func known(v int64) dim { return dim{v: v} }

func (d dim) static() bool { return d.sym == "" }

func (d dim) is(v int64) bool { return d.sym == "" && d.v == v }

func (d dim) eq(o dim) bool {
	if d.static() || o.static() {
		return d.static() && o.static() && d.v == o.v
	}
	return d.sym == o.sym
}

// shape is a symbolic tensor shape. When ok is false the rank is unknown
// and dims is nil.
type shape struct {
	ok   bool
	dims []dim
}

func (s shape) rank() int {
	if !s.ok {
		return -1
	}
	return len(s.dims)
}

// static reports whether every dim of s is a known size.
func (s shape) static() bool {
	if !s.ok {
		return false
	}
	for _, d := range s.dims {
		if !d.static() {
			return false
		}
	}
	return true
}

func (s shape) sizes() []int64 {
	out := make([]int64, len(s.dims))
	for i, d := range s.dims {
		out[i] = d.v
	}
	return out
}

// numel returns the element count of a static shape, or -1.
func (s shape) numel() int64 {
	if !s.static() {
		return -1
	}
	return graph.NumElements(s.sizes())
}

func unknownShape() shape { return shape{} }

func rankShape(dims ...dim) shape { return shape{ok: true, dims: dims} }

// tinfo is what inference knows about a value: its element type (0 when
// unknown), its shape, and, for small integer tensors such as shapes, its
// values as dims.
type tinfo struct {
	elem  dtype.Type
	shape shape
	vals  []dim // values of a rank 0 or 1 integer tensor, nil when unknown
}

// inferer works out element types and symbolic shapes for every value of
// a graph, best effort. It never fails: what it cannot work out stays
// unknown, and the rules fall back to computing shapes in the graph.
type inferer struct {
	m     *graph.Model
	info  map[string]*tinfo
	fresh int
	lins  map[string]lin // linear expressions behind symbols (symbolic.go)
}

func newInferer(m *graph.Model) *inferer {
	return &inferer{m: m, info: map[string]*tinfo{}}
}

func (f *inferer) freshDim() dim {
	f.fresh++
	return dim{sym: "?" + strconv.Itoa(f.fresh)}
}

// get returns the info of name; an unknown value gets an empty info.
func (f *inferer) get(name string) *tinfo {
	if t, ok := f.info[name]; ok {
		return t
	}
	return &tinfo{}
}

// fromValueInfo reads the declared type of a graph value.
func (f *inferer) fromValueInfo(v *onnxpb.ValueInfoProto) *tinfo {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return &tinfo{}
	}
	t := &tinfo{elem: dtype.Type(tt.ElemType)}
	if tt.Shape != nil {
		t.shape.ok = true
		for _, d := range tt.Shape.Dim {
			switch x := d.Value.(type) {
			case *onnxpb.TensorShapeProto_Dimension_DimValue:
				t.shape.dims = append(t.shape.dims, known(x.DimValue))
			case *onnxpb.TensorShapeProto_Dimension_DimParam:
				if x.DimParam != "" {
					t.shape.dims = append(t.shape.dims, dim{sym: "$" + x.DimParam})
				} else {
					t.shape.dims = append(t.shape.dims, f.freshDim())
				}
			default:
				t.shape.dims = append(t.shape.dims, f.freshDim())
			}
		}
	}
	return t
}

// fromTensor describes a constant tensor, with its values when it is a
// small integer tensor.
func (f *inferer) fromTensor(t *onnxpb.TensorProto) *tinfo {
	ti := &tinfo{elem: graph.TypeOf(t), shape: rankShape()}
	for _, d := range t.Dims {
		ti.shape.dims = append(ti.shape.dims, known(d))
	}
	if len(t.Dims) <= 1 && graph.NumElements(t.Dims) <= 64 && isInt(graph.TypeOf(t)) {
		if vs, err := f.m.Int64s(t); err == nil {
			ti.vals = make([]dim, len(vs))
			for i, v := range vs {
				ti.vals[i] = known(v)
			}
		}
	}
	return ti
}

func isInt(dt dtype.Type) bool {
	return dt == dtype.Int64 || dt == dtype.Int32
}

// run infers every value of the graph. nodes must be in topological order.
func (f *inferer) run(nodes []*onnxpb.NodeProto) {
	g := f.m.Graph()
	declared := map[string]*onnxpb.ValueInfoProto{}
	for _, v := range g.ValueInfo {
		declared[v.Name] = v
	}
	for _, v := range g.Output {
		declared[v.Name] = v
	}
	for _, t := range g.Initializer {
		f.info[t.Name] = f.fromTensor(t)
	}
	for _, v := range g.Input {
		// An input with a default keeps its declared type: it may be fed
		// with another shape than the default's.
		f.info[v.Name] = f.fromValueInfo(v)
	}
	for _, n := range nodes {
		f.node(n)
		for _, o := range n.Output {
			if o == "" {
				continue
			}
			if v, ok := declared[o]; ok {
				f.info[o] = f.merge(f.info[o], f.fromValueInfo(v))
			}
			if f.info[o] == nil {
				f.info[o] = &tinfo{}
			}
		}
	}
}

// merge combines what inference found with what the model declares.
func (f *inferer) merge(got, decl *tinfo) *tinfo {
	if got == nil {
		return decl
	}
	out := *got
	if out.elem == dtype.Undefined {
		out.elem = decl.elem
	}
	switch {
	case !got.shape.ok:
		out.shape = decl.shape
	case decl.shape.ok && len(decl.shape.dims) == len(got.shape.dims):
		dims := append([]dim(nil), got.shape.dims...)
		for i, d := range decl.shape.dims {
			if !dims[i].static() && (d.static() || d.sym[0] == '$') {
				dims[i] = d
			}
		}
		out.shape = rankShape(dims...)
	}
	return &out
}

func (f *inferer) set(name string, t *tinfo) {
	if name != "" {
		f.info[name] = t
	}
}

// in returns the info of input i of n, or an empty info when it is absent.
func (f *inferer) in(n *onnxpb.NodeProto, i int) *tinfo {
	if i >= len(n.Input) || n.Input[i] == "" {
		return &tinfo{}
	}
	return f.get(n.Input[i])
}

// constInts returns the values of input i when they are known statically.
func (f *inferer) constInts(n *onnxpb.NodeProto, i int) ([]int64, bool) {
	if i >= len(n.Input) || n.Input[i] == "" {
		return nil, false
	}
	return staticVals(f.get(n.Input[i]).vals)
}

func staticVals(vs []dim) ([]int64, bool) {
	if vs == nil {
		return nil, false
	}
	out := make([]int64, len(vs))
	for i, v := range vs {
		if !v.static() {
			return nil, false
		}
		out[i] = v.v
	}
	return out, true
}

// normAxis turns a possibly negative axis into one in [0, rank).
func normAxis(a int64, rank int) int {
	if a < 0 {
		a += int64(rank)
	}
	return int(a)
}

func (f *inferer) broadcast(shapes ...shape) shape {
	r := 0
	for _, s := range shapes {
		if !s.ok {
			return unknownShape()
		}
		r = max(r, len(s.dims))
	}
	out := make([]dim, r)
	for i := range out {
		var cur *dim
		for _, s := range shapes {
			j := i - (r - len(s.dims))
			if j < 0 {
				continue
			}
			d := s.dims[j]
			switch {
			case cur == nil:
				cur = &d
			case cur.is(1):
				cur = &d
			case d.is(1), d.eq(*cur):
			case d.static():
				cur = &d
			case cur.static():
			default:
				fd := f.freshDim()
				cur = &fd
			}
		}
		out[i] = *cur
	}
	return rankShape(out...)
}

// node infers the outputs of one node.
func (f *inferer) node(n *onnxpb.NodeProto) {
	x := f.in(n, 0)
	same := func() {
		for _, o := range n.Output[:1] {
			f.set(o, &tinfo{elem: x.elem, shape: x.shape})
		}
	}
	out := func(dt dtype.Type, s shape) {
		if len(n.Output) > 0 {
			f.set(n.Output[0], &tinfo{elem: dt, shape: s})
		}
	}
	switch n.Domain + ":" + n.OpType {
	case ":Constant":
		f.constant(n)
	case ":Identity":
		if len(n.Output) > 0 {
			f.set(n.Output[0], &tinfo{elem: x.elem, shape: x.shape, vals: x.vals})
		}
	case ":Neg", ":Sqrt", ":Exp", ":Log", ":Tanh", ":Sigmoid", ":Relu", ":Erf", ":Cos", ":Sin", ":Abs",
		":Reciprocal", ":Softmax", ":LogSoftmax", ":Floor", ":Ceil", ":Round", ":Sign", ":Softplus",
		":LeakyRelu", ":Elu", ":Selu", ":HardSigmoid", ":Gelu", ":Clip", ":Trilu", ":Tan", ":Atan",
		":HardSwish", ":Mish", ":Celu", ":Softsign", ":Shrink", ":ThresholdedRelu", ":Asin", ":Acos",
		":Sinh", ":Cosh", ":Asinh", ":Acosh", ":Atanh", ":BitwiseNot",
		"com.microsoft:Gelu", "com.microsoft:FastGelu", "com.microsoft:BiasGelu", "com.microsoft:QuickGelu",
		"com.microsoft:RotaryEmbedding", ":RotaryEmbedding":
		same()
	case ":Not", ":IsNaN", ":IsInf":
		out(dtype.Bool, x.shape)
	case ":RandomUniformLike", ":RandomNormalLike", ":Bernoulli":
		dt := x.elem
		if a := graph.Attr(n, "dtype"); a != nil {
			dt = dtype.Type(a.I)
		}
		out(dt, x.shape)
	case ":Cast":
		t := &tinfo{elem: dtype.Type(graph.IntAttr(n, "to", 0)), shape: x.shape}
		if isInt(t.elem) && isInt(x.elem) {
			t.vals = x.vals
		}
		f.set(n.Output[0], t)
	case ":CastLike":
		out(f.in(n, 1).elem, x.shape)
	case ":Shape":
		f.shapeOp(n, x)
	case ":Size":
		t := &tinfo{elem: dtype.Int64, shape: rankShape()}
		if ne := x.shape.numel(); ne >= 0 {
			t.vals = []dim{known(ne)}
		}
		f.set(n.Output[0], t)
	case ":Add", ":Sub", ":Mul", ":Div", ":Pow", ":Max", ":Min", ":Sum", ":Mean", ":Mod", ":PRelu":
		var ss []shape
		for i := range n.Input {
			ss = append(ss, f.in(n, i).shape)
		}
		t := &tinfo{elem: x.elem, shape: f.broadcast(ss...)}
		if len(n.Input) == 2 {
			t.vals = f.arith(n.OpType, x, f.in(n, 1))
		}
		f.set(n.Output[0], t)
	case ":Equal", ":Less", ":Greater", ":LessOrEqual", ":GreaterOrEqual", ":And", ":Or", ":Xor":
		out(dtype.Bool, f.broadcast(x.shape, f.in(n, 1).shape))
	case ":Where":
		out(f.in(n, 1).elem, f.broadcast(x.shape, f.in(n, 1).shape, f.in(n, 2).shape))
	case ":MatMul":
		out(x.elem, f.matmul(x.shape, f.in(n, 1).shape))
	case ":Gemm":
		a, b := x.shape, f.in(n, 1).shape
		s := unknownShape()
		if a.rank() == 2 && b.rank() == 2 {
			m, k := a.dims[0], b.dims[1]
			if graph.IntAttr(n, "transA", 0) != 0 {
				m = a.dims[1]
			}
			if graph.IntAttr(n, "transB", 0) != 0 {
				k = b.dims[0]
			}
			s = rankShape(m, k)
		}
		out(x.elem, s)
	case ":ReduceSum", ":ReduceMean", ":ReduceMax", ":ReduceMin", ":ReduceProd", ":ReduceL2", ":ReduceSumSquare", ":ReduceLogSumExp":
		f.reduce(n, x)
	case ":ArgMax", ":ArgMin":
		t := f.reduceShape(x.shape, []int64{graph.IntAttr(n, "axis", 0)}, true, graph.IntAttr(n, "keepdims", 1) != 0, false)
		out(dtype.Int64, t)
	case ":Reshape":
		f.reshape(n, x)
	case ":Flatten":
		s := unknownShape()
		if x.shape.ok {
			a := normAxis(graph.IntAttr(n, "axis", 1), x.shape.rank())
			s = rankShape(f.prod(x.shape.dims[:a]), f.prod(x.shape.dims[a:]))
		}
		out(x.elem, s)
	case ":Transpose":
		s := unknownShape()
		if x.shape.ok {
			perm := graph.IntsAttr(n, "perm")
			r := x.shape.rank()
			if perm == nil {
				for i := r - 1; i >= 0; i-- {
					perm = append(perm, int64(i))
				}
			}
			if len(perm) == r {
				s = rankShape()
				for _, p := range perm {
					s.dims = append(s.dims, x.shape.dims[p])
				}
			}
		}
		out(x.elem, s)
	case ":Unsqueeze":
		f.unsqueeze(n, x)
	case ":Squeeze":
		f.squeeze(n, x)
	case ":Concat":
		f.concat(n)
	case ":Split":
		f.split(n, x)
	case ":Slice":
		f.slice(n, x)
	case ":Gather":
		f.gather(n, x)
	case ":GatherElements":
		out(x.elem, f.in(n, 1).shape)
	case ":Expand":
		s := unknownShape()
		if vs := f.in(n, 1).vals; vs != nil {
			s = f.broadcast(x.shape, rankShape(vs...))
		}
		out(x.elem, s)
	case ":Tile":
		s := unknownShape()
		if x.shape.ok {
			s = rankShape()
			reps, ok := f.constInts(n, 1)
			for i, d := range x.shape.dims {
				if ok && d.static() {
					s.dims = append(s.dims, known(d.v*reps[i]))
				} else if ok && reps[i] == 1 {
					s.dims = append(s.dims, d)
				} else {
					s.dims = append(s.dims, f.freshDim())
				}
			}
		}
		out(x.elem, s)
	case ":Pad":
		sh := unknownShape()
		if pads, ok := f.constInts(n, 1); ok && x.shape.ok && len(pads) == 2*x.shape.rank() && inputOr(n, 3) == "" {
			r := x.shape.rank()
			sh = rankShape()
			for i, d := range x.shape.dims {
				sh.dims = append(sh.dims, f.addDims(d, known(pads[i]+pads[r+i]), 1))
			}
		} else if x.shape.ok {
			sh = rankShape()
			for range x.shape.dims {
				sh.dims = append(sh.dims, f.freshDim())
			}
		}
		out(x.elem, sh)
	case ":ConstantOfShape":
		dt := dtype.Float32
		if a := graph.Attr(n, "value"); a != nil && a.T != nil {
			dt = graph.TypeOf(a.T)
		}
		s := unknownShape()
		if vs := x.vals; vs != nil {
			s = rankShape(vs...)
		}
		out(dt, s)
	case ":Range":
		// With a step of 1 the length is limit − start.
		length := f.freshDim()
		st, lim, step := x.vals, f.in(n, 1).vals, f.in(n, 2).vals
		if len(st) == 1 && len(lim) == 1 && len(step) == 1 && step[0].is(1) {
			length = f.addDims(lim[0], st[0], -1)
		}
		out(x.elem, rankShape(length))
	case ":NonZero":
		out(dtype.Int64, rankShape(known(int64(x.shape.rank())), f.freshDim()))
	case ":OneHot":
		s := unknownShape()
		if x.shape.ok {
			depth := f.freshDim()
			if d, ok := f.constInts(n, 1); ok && len(d) == 1 {
				depth = known(d[0])
			}
			r := x.shape.rank() + 1
			a := normAxis(graph.IntAttr(n, "axis", -1), r)
			dims := append(append(append([]dim(nil), x.shape.dims[:a]...), depth), x.shape.dims[a:]...)
			s = rankShape(dims...)
		}
		out(f.in(n, 2).elem, s)
	case ":Dropout":
		same()
		if len(n.Output) > 1 {
			f.set(n.Output[1], &tinfo{elem: dtype.Bool, shape: x.shape})
		}
	case ":LayerNormalization", ":SimplifiedLayerNormalization":
		same()
		for _, o := range n.Output[1:] {
			f.set(o, &tinfo{elem: dtype.Float32, shape: f.statShape(n, x.shape)})
		}
	case "com.microsoft:SkipSimplifiedLayerNormalization", "com.microsoft:SkipLayerNormalization":
		same()
		for i, o := range n.Output[1:] {
			if i == 2 {
				f.set(o, &tinfo{elem: x.elem, shape: x.shape})
			} else {
				f.set(o, &tinfo{elem: dtype.Float32, shape: f.statShape(n, x.shape)})
			}
		}
	case "com.microsoft:MultiHeadAttention":
		s := unknownShape()
		v := f.in(n, 2).shape
		if x.shape.rank() == 3 && v.rank() == 3 {
			s = rankShape(x.shape.dims[0], x.shape.dims[1], v.dims[2])
		}
		out(x.elem, s)
		for _, o := range n.Output[1:] {
			f.set(o, &tinfo{elem: x.elem, shape: rankShape(f.freshDim(), f.freshDim(), f.freshDim(), f.freshDim())})
		}
	case ":SoftmaxCrossEntropyLoss", ":NegativeLogLikelihoodLoss":
		s := rankShape()
		if graph.StringAttr(n, "reduction", "mean") == "none" {
			s = f.in(n, 1).shape
		}
		out(x.elem, s)
		if len(n.Output) > 1 {
			f.set(n.Output[1], &tinfo{elem: x.elem, shape: x.shape})
		}
	default:
		// An unknown op: its outputs stay unknown unless the model
		// declares them.
	}
}

// statShape is the shape of a normalization's mean or inverse std output:
// the input's, with the normalized axes set to 1.
func (f *inferer) statShape(n *onnxpb.NodeProto, s shape) shape {
	if !s.ok {
		return s
	}
	a := normAxis(graph.IntAttr(n, "axis", -1), s.rank())
	dims := append([]dim(nil), s.dims...)
	for i := a; i < len(dims); i++ {
		dims[i] = known(1)
	}
	return rankShape(dims...)
}

func (f *inferer) prod(ds []dim) dim {
	p := int64(1)
	for _, d := range ds {
		if !d.static() {
			if len(ds) == 1 {
				return d
			}
			return f.freshDim()
		}
		p *= d.v
	}
	return known(p)
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

func (f *inferer) constant(n *onnxpb.NodeProto) {
	for _, a := range n.Attribute {
		switch a.Name {
		case "value":
			if a.T != nil {
				f.set(n.Output[0], f.fromTensor(a.T))
			}
		case "value_float":
			f.set(n.Output[0], &tinfo{elem: dtype.Float32, shape: rankShape()})
		case "value_floats":
			f.set(n.Output[0], &tinfo{elem: dtype.Float32, shape: rankShape(known(int64(len(a.Floats))))})
		case "value_int":
			f.set(n.Output[0], &tinfo{elem: dtype.Int64, shape: rankShape(), vals: []dim{known(a.I)}})
		case "value_ints":
			vs := make([]dim, len(a.Ints))
			for i, v := range a.Ints {
				vs[i] = known(v)
			}
			f.set(n.Output[0], &tinfo{elem: dtype.Int64, shape: rankShape(known(int64(len(a.Ints)))), vals: vs})
		}
	}
}

func (f *inferer) shapeOp(n *onnxpb.NodeProto, x *tinfo) {
	t := &tinfo{elem: dtype.Int64, shape: rankShape(f.freshDim())}
	if x.shape.ok {
		r := x.shape.rank()
		start, end := graph.IntAttr(n, "start", 0), graph.IntAttr(n, "end", int64(r))
		s, e := clampIndex(start, r), clampIndex(end, r)
		if e < s {
			e = s
		}
		t.vals = append([]dim(nil), x.shape.dims[s:e]...)
		t.shape = rankShape(known(int64(e - s)))
	}
	f.set(n.Output[0], t)
}

func clampIndex(i int64, r int) int {
	if i < 0 {
		i += int64(r)
	}
	return int(min(max(i, 0), int64(r)))
}

func (f *inferer) matmul(a, b shape) shape {
	if !a.ok || !b.ok || a.rank() == 0 || b.rank() == 0 {
		return unknownShape()
	}
	ad, bd := a.dims, b.dims
	if len(ad) == 1 {
		ad = []dim{known(1), ad[0]}
	}
	if len(bd) == 1 {
		bd = []dim{bd[0], known(1)}
	}
	batch := f.broadcast(rankShape(ad[:len(ad)-2]...), rankShape(bd[:len(bd)-2]...))
	dims := batch.dims
	if a.rank() > 1 {
		dims = append(dims, ad[len(ad)-2])
	}
	if b.rank() > 1 {
		dims = append(dims, bd[len(bd)-1])
	}
	return rankShape(dims...)
}

// reduceAxes returns the axes of a Reduce* node: from the attribute, or
// from the second input (opset 13 for ReduceSum, 18 for the others).
// ok is false when they are given by a value that is not constant.
func (f *inferer) reduceAxes(n *onnxpb.NodeProto) (axes []int64, ok bool) {
	if a := graph.Attr(n, "axes"); a != nil {
		return a.Ints, true
	}
	if len(n.Input) > 1 && n.Input[1] != "" {
		return f.constInts(n, 1)
	}
	return nil, true
}

func (f *inferer) reduce(n *onnxpb.NodeProto, x *tinfo) {
	axes, ok := f.reduceAxes(n)
	keep := graph.IntAttr(n, "keepdims", 1) != 0
	noop := graph.IntAttr(n, "noop_with_empty_axes", 0) != 0
	s := unknownShape()
	if ok {
		s = f.reduceShape(x.shape, axes, len(axes) > 0, keep, noop)
	}
	f.set(n.Output[0], &tinfo{elem: x.elem, shape: s})
}

func (f *inferer) reduceShape(s shape, axes []int64, given, keep, noop bool) shape {
	if !s.ok {
		return s
	}
	if !given && noop {
		return s
	}
	red := map[int]bool{}
	for i := range s.dims {
		red[i] = !given
	}
	for _, a := range axes {
		red[normAxis(a, s.rank())] = true
	}
	out := rankShape()
	for i, d := range s.dims {
		switch {
		case !red[i]:
			out.dims = append(out.dims, d)
		case keep:
			out.dims = append(out.dims, known(1))
		}
	}
	return out
}

func (f *inferer) reshape(n *onnxpb.NodeProto, x *tinfo) {
	t := &tinfo{elem: x.elem, shape: unknownShape()}
	sh := f.in(n, 1)
	allowZero := graph.IntAttr(n, "allowzero", 0) != 0
	switch {
	case sh.vals != nil:
		dims := make([]dim, len(sh.vals))
		neg := -1
		for i, v := range sh.vals {
			switch {
			case v.is(0) && !allowZero:
				if x.shape.ok && i < x.shape.rank() {
					dims[i] = x.shape.dims[i]
				} else {
					dims[i] = f.freshDim()
				}
			case v.is(-1):
				neg = i
			default:
				dims[i] = v
			}
		}
		if neg >= 0 {
			dims[neg] = f.freshDim()
			if x.shape.ok {
				others := append(append([]dim(nil), dims[:neg]...), dims[neg+1:]...)
				if d, ok := f.quotient(productOf(x.shape.dims), productOf(others)); ok {
					dims[neg] = d
				}
			}
		}
		t.shape = rankShape(dims...)
	case sh.shape.rank() == 1 && sh.shape.dims[0].static():
		dims := make([]dim, sh.shape.dims[0].v)
		for i := range dims {
			dims[i] = f.freshDim()
		}
		t.shape = rankShape(dims...)
	}
	if x.vals != nil && t.shape.rank() <= 1 {
		t.vals = x.vals
	}
	f.set(n.Output[0], t)
}

func (f *inferer) unsqueezeAxes(n *onnxpb.NodeProto) ([]int64, bool) {
	if a := graph.Attr(n, "axes"); a != nil {
		return a.Ints, true
	}
	return f.constInts(n, 1)
}

func (f *inferer) unsqueeze(n *onnxpb.NodeProto, x *tinfo) {
	t := &tinfo{elem: x.elem, shape: unknownShape()}
	axes, ok := f.unsqueezeAxes(n)
	if ok && x.shape.ok {
		r := x.shape.rank() + len(axes)
		ins := map[int]bool{}
		for _, a := range axes {
			ins[normAxis(a, r)] = true
		}
		src := x.shape.dims
		for i := 0; i < r; i++ {
			if ins[i] {
				t.shape.dims = append(t.shape.dims, known(1))
			} else if len(src) > 0 {
				t.shape.dims = append(t.shape.dims, src[0])
				src = src[1:]
			}
		}
		t.shape.ok = true
		if x.vals != nil && r <= 1 {
			t.vals = x.vals
		}
	}
	f.set(n.Output[0], t)
}

func (f *inferer) squeeze(n *onnxpb.NodeProto, x *tinfo) {
	t := &tinfo{elem: x.elem, shape: unknownShape()}
	axes, ok := f.unsqueezeAxes(n)
	if len(n.Input) < 2 && graph.Attr(n, "axes") == nil {
		axes, ok = nil, true
	}
	if ok && x.shape.ok {
		drop := map[int]bool{}
		for _, a := range axes {
			drop[normAxis(a, x.shape.rank())] = true
		}
		t.shape.ok = true
		for i, d := range x.shape.dims {
			if len(axes) == 0 {
				if !d.static() {
					t.shape = unknownShape()
					break
				}
				if d.is(1) {
					continue
				}
			} else if drop[i] {
				continue
			}
			t.shape.dims = append(t.shape.dims, d)
		}
		if x.vals != nil && t.shape.ok && t.shape.rank() <= 1 {
			t.vals = x.vals
		}
	}
	f.set(n.Output[0], t)
}

func (f *inferer) concat(n *onnxpb.NodeProto) {
	x := f.in(n, 0)
	t := &tinfo{elem: x.elem, shape: unknownShape()}
	axis := graph.IntAttr(n, "axis", 0)
	var vals []dim
	valsOK := true
	for i := range n.Input {
		in := f.in(n, i)
		if in.vals == nil || in.shape.rank() > 1 {
			valsOK = false
		}
		vals = append(vals, in.vals...)
		if !in.shape.ok {
			continue
		}
		r := in.shape.rank()
		a := normAxis(axis, r)
		if !t.shape.ok {
			t.shape = rankShape(append([]dim(nil), in.shape.dims...)...)
			continue
		}
		if t.shape.rank() != r || a >= r {
			continue
		}
		t.shape.dims[a] = f.addDims(t.shape.dims[a], in.shape.dims[a], 1)
	}
	// Every input must have a known shape for the concat axis to add up.
	for i := range n.Input {
		if !f.in(n, i).shape.ok {
			t.shape = unknownShape()
			break
		}
	}
	if valsOK {
		t.vals = vals
	}
	f.set(n.Output[0], t)
}

// splitSizes returns the sizes of a Split node's outputs along its axis,
// where they are known.
func (f *inferer) splitSizes(n *onnxpb.NodeProto, x *tinfo) ([]dim, bool) {
	var sizes []int64
	ok := false
	if a := graph.Attr(n, "split"); a != nil {
		sizes, ok = a.Ints, true
	} else if len(n.Input) > 1 && n.Input[1] != "" {
		sizes, ok = f.constInts(n, 1)
		if !ok {
			return nil, false
		}
	}
	if ok {
		out := make([]dim, len(sizes))
		for i, s := range sizes {
			out[i] = known(s)
		}
		return out, true
	}
	if !x.shape.ok {
		return nil, false
	}
	a := normAxis(graph.IntAttr(n, "axis", 0), x.shape.rank())
	d := x.shape.dims[a]
	k := int64(len(n.Output))
	if no := graph.IntAttr(n, "num_outputs", 0); no > 0 {
		k = no
	}
	out := make([]dim, len(n.Output))
	if !d.static() {
		for i := range out {
			out[i] = f.freshDim()
		}
		return out, true
	}
	chunk := (d.v + k - 1) / k
	for i := range out {
		out[i] = known(min(chunk, d.v-int64(i)*chunk))
	}
	return out, true
}

func (f *inferer) split(n *onnxpb.NodeProto, x *tinfo) {
	sizes, ok := f.splitSizes(n, x)
	for i, o := range n.Output {
		t := &tinfo{elem: x.elem, shape: unknownShape()}
		if ok && x.shape.ok && i < len(sizes) {
			a := normAxis(graph.IntAttr(n, "axis", 0), x.shape.rank())
			dims := append([]dim(nil), x.shape.dims...)
			dims[a] = sizes[i]
			t.shape = rankShape(dims...)
		}
		f.set(o, t)
	}
}

// sliceParams returns a Slice node's starts, ends, axes and steps when
// they are constant.
func (f *inferer) sliceParams(n *onnxpb.NodeProto) (starts, ends, axes, steps []int64, ok bool) {
	if graph.Attr(n, "starts") != nil {
		starts, ends, axes = graph.IntsAttr(n, "starts"), graph.IntsAttr(n, "ends"), graph.IntsAttr(n, "axes")
	} else {
		var ok1, ok2 bool
		starts, ok1 = f.constInts(n, 1)
		ends, ok2 = f.constInts(n, 2)
		if !ok1 || !ok2 {
			return nil, nil, nil, nil, false
		}
		if len(n.Input) > 3 && n.Input[3] != "" {
			if axes, ok = f.constInts(n, 3); !ok {
				return nil, nil, nil, nil, false
			}
		}
		if len(n.Input) > 4 && n.Input[4] != "" {
			if steps, ok = f.constInts(n, 4); !ok {
				return nil, nil, nil, nil, false
			}
		}
	}
	if axes == nil {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if steps == nil {
		steps = make([]int64, len(starts))
		for i := range steps {
			steps[i] = 1
		}
	}
	if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, nil, nil, nil, false
	}
	return starts, ends, axes, steps, true
}

// sliceLen is the length of a slice of a dimension of size d.
func sliceLen(d, start, end, step int64) int64 {
	if step == 0 {
		return -1
	}
	clamp := func(i, lo, hi int64) int64 { return min(max(i, lo), hi) }
	if start < 0 {
		start += d
	}
	if end < 0 {
		end += d
	}
	if step > 0 {
		start, end = clamp(start, 0, d), clamp(end, 0, d)
		if end <= start {
			return 0
		}
		return (end - start + step - 1) / step
	}
	start, end = clamp(start, 0, d-1), clamp(end, -1, d-1)
	if start <= end {
		return 0
	}
	return (start - end - step - 1) / -step
}

func (f *inferer) slice(n *onnxpb.NodeProto, x *tinfo) {
	t := &tinfo{elem: x.elem, shape: unknownShape()}
	starts, ends, axes, steps, ok := f.sliceParams(n)
	if x.shape.ok {
		t.shape = rankShape(append([]dim(nil), x.shape.dims...)...)
		if !ok {
			for i := range t.shape.dims {
				t.shape.dims[i] = f.freshDim()
			}
		} else {
			for i, a := range axes {
				j := normAxis(a, x.shape.rank())
				if j < 0 || j >= x.shape.rank() {
					continue
				}
				d := x.shape.dims[j]
				if d.static() {
					t.shape.dims[j] = known(sliceLen(d.v, starts[i], ends[i], steps[i]))
				} else if !(starts[i] == 0 && steps[i] == 1 && ends[i] >= 1<<62) {
					t.shape.dims[j] = f.freshDim()
				}
			}
		}
	}
	if ok && x.vals != nil && x.shape.rank() == 1 && len(starts) == 1 && steps[0] == 1 {
		d := int64(len(x.vals))
		s, e := starts[0], ends[0]
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		s, e = min(max(s, 0), d), min(max(e, 0), d)
		if e >= s {
			t.vals = x.vals[s:e]
		}
	}
	f.set(n.Output[0], t)
}

func (f *inferer) gather(n *onnxpb.NodeProto, x *tinfo) {
	idx := f.in(n, 1)
	t := &tinfo{elem: x.elem, shape: unknownShape()}
	if x.shape.ok && idx.shape.ok {
		a := normAxis(graph.IntAttr(n, "axis", 0), x.shape.rank())
		if a >= 0 && a < x.shape.rank() {
			dims := append([]dim(nil), x.shape.dims[:a]...)
			dims = append(dims, idx.shape.dims...)
			dims = append(dims, x.shape.dims[a+1:]...)
			t.shape = rankShape(dims...)
		}
	}
	if x.vals != nil && x.shape.rank() == 1 {
		if iv, ok := staticVals(idx.vals); ok && idx.shape.rank() <= 1 {
			d := int64(len(x.vals))
			for _, i := range iv {
				if i < 0 {
					i += d
				}
				if i < 0 || i >= d {
					t.vals = nil
					break
				}
				t.vals = append(t.vals, x.vals[i])
			}
		}
	}
	f.set(n.Output[0], t)
}
