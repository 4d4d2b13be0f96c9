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
//
// Each op's inference is the infer function of its registry entry. An op
// without one gets, for each output, the type that the graph declares
// (value_info or a graph output); an output that the graph does not
// declare either stays unknown and is listed in undescribed.
//
// Only the inferer writes its table: node infers a node's outputs, record
// states what a value added outside node inference is, and setShape
// refines the shape of a value that a rule emitted.
type inferer struct {
	m     *graph.Model
	info  map[string]*tinfo
	fresh int
	lins  map[string]lin // linear expressions behind symbols (symbolic.go)
	// declared holds the value infos and graph outputs of the graph that
	// run was given.
	declared map[string]*onnxpb.ValueInfoProto
	// undescribed lists the outputs, in graph order, of the forward nodes
	// whose op inference does not know and that the graph does not
	// declare: what a later step would have to find out by other means.
	undescribed []string
	// extra are value infos that count as declared by the graph: what a
	// probe run found out (WithShapeProbe).
	extra []*onnxpb.ValueInfoProto
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
	f.declared = map[string]*onnxpb.ValueInfoProto{}
	for _, v := range g.ValueInfo {
		f.declared[v.Name] = v
	}
	for _, v := range g.Output {
		f.declared[v.Name] = v
	}
	for _, v := range f.extra {
		if _, ok := f.declared[v.Name]; !ok {
			f.declared[v.Name] = v
		}
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
		if inferOf(n) != nil {
			continue
		}
		for _, o := range n.Output {
			if _, ok := f.declared[o]; o != "" && !ok {
				f.undescribed = append(f.undescribed, o)
			}
		}
	}
}

// inferOf returns the inference function of n's op, or nil.
func inferOf(n *onnxpb.NodeProto) inferFunc {
	if e := lookup(n); e != nil {
		return e.infer
	}
	return nil
}

// node infers the outputs of n with its op's inference, merged with the
// types that the graph declares for them. For an op that inference does
// not know, the declared types are all there is: they are taken as they
// are, and an output that the graph does not declare gets an empty info.
func (f *inferer) node(n *onnxpb.NodeProto) {
	var outs []*tinfo
	if infer := inferOf(n); infer != nil {
		outs = infer(f, n)
	}
	for i, o := range n.Output {
		if o == "" {
			continue
		}
		var t *tinfo
		if i < len(outs) {
			t = outs[i]
		}
		if v, ok := f.declared[o]; ok {
			t = f.merge(t, f.fromValueInfo(v))
		}
		if t == nil {
			t = &tinfo{}
		}
		f.info[o] = t
	}
}

// record states what v is, for a value that no node inference covers: an
// output that a rule adds to a forward node, a value copied under another
// name, a constant.
func (f *inferer) record(v string, t tinfo) {
	if v != "" {
		f.info[v] = &t
	}
}

// setShape replaces the shape of v, keeping its element type: for a value
// that a rule emitted and whose shape the rule knows better than
// inference (a gradient has its input's shape).
func (f *inferer) setShape(v string, s shape) {
	t := *f.get(v)
	t.shape = s
	f.record(v, t)
}

// one returns the infos of a node with one output described.
func one(t *tinfo) []*tinfo { return []*tinfo{t} }

// inferSame describes the first output as a copy of the first input's
// element type and shape: element-wise ops of one input.
func inferSame(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	return one(&tinfo{elem: x.elem, shape: x.shape})
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
