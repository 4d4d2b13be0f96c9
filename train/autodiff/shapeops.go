package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Ops that move elements around without changing them: the gradient moves
// them back. Shape, index and axes inputs get no gradient. Their inference
// follows symbolic dims, and the values of small integer tensors (shapes),
// through them; Shape and Size, which read shapes, have inference only.

func init() {
	reshapeBack := func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		return []string{e.reshapeLike(dy[0], n.Input[0])}
	}
	register("", "Reshape", entry{grad: reshapeBack, diff: []int{0}, infer: inferReshape})
	register("", "Flatten", entry{grad: reshapeBack, diff: []int{0}, infer: inferFlatten})
	register("", "Squeeze", entry{grad: reshapeBack, diff: []int{0}, infer: inferSqueeze})
	register("", "Unsqueeze", entry{grad: reshapeBack, diff: []int{0}, infer: inferUnsqueeze})
	register("", "Expand", entry{grad: func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		return []string{e.unbroadcast(dy[0], n.Input[0])}
	}, diff: []int{0}, infer: inferExpand})
	register("", "Transpose", entry{grad: gradTranspose, infer: inferTranspose})
	register("", "Concat", entry{grad: gradConcat, infer: inferConcat})
	register("", "Split", entry{grad: gradSplit, diff: []int{0}, infer: inferSplit})
	register("", "Slice", entry{grad: gradSlice, diff: []int{0}, infer: inferSlice})
	register("", "Gather", entry{grad: gradGather, diff: []int{0}, infer: inferGather})
	register("", "GatherElements", entry{grad: gradGatherElements, diff: []int{0}, infer: inferGatherElements})
	register("", "Pad", entry{grad: gradPad, diff: []int{0}, infer: inferPad})
	register("", "Tile", entry{grad: gradTile, diff: []int{0}, infer: inferTile})
	// The scatters that the rules of Gather, GatherElements, Slice and the
	// cross entropy emit: data with some elements replaced.
	register("", "ScatterElements", entry{infer: inferScatter})
	register("", "ScatterND", entry{infer: inferScatter})
	// Shapes and sizes: integer values that inference follows, no
	// gradient.
	register("", "Shape", entry{infer: inferShape})
	register("", "Size", entry{infer: inferSize})
}

// inferFlatten: [the product of the dims before axis, that of the rest].
func inferFlatten(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	s := unknownShape()
	if x.shape.ok {
		a := normAxis(graph.IntAttr(n, "axis", 1), x.shape.rank())
		s = rankShape(f.prod(x.shape.dims[:a]), f.prod(x.shape.dims[a:]))
	}
	return one(&tinfo{elem: x.elem, shape: s})
}

// inferTranspose: the input's dims in perm's order (reversed by default).
func inferTranspose(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(&tinfo{elem: x.elem, shape: s})
}

// inferGatherElements: the indices' shape.
func inferGatherElements(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: f.in(n, 0).elem, shape: f.in(n, 1).shape})
}

// inferScatter: data's type and shape.
func inferScatter(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	return one(&tinfo{elem: x.elem, shape: x.shape})
}

// inferExpand: the broadcast of the input and the target shape.
func inferExpand(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	s := unknownShape()
	if vs := f.in(n, 1).vals; vs != nil {
		s = f.broadcast(x.shape, rankShape(vs...))
	}
	return one(&tinfo{elem: x.elem, shape: s})
}

// inferTile: each dim times its repeat.
func inferTile(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(&tinfo{elem: x.elem, shape: s})
}

// inferPad: each dim plus its pads, for constant pads over every axis.
func inferPad(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(&tinfo{elem: x.elem, shape: sh})
}

// inferSize: a scalar, known when the input's shape is static.
func inferSize(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	t := &tinfo{elem: dtype.Int64, shape: rankShape()}
	if ne := f.in(n, 0).shape.numel(); ne >= 0 {
		t.vals = []dim{known(ne)}
	}
	return one(t)
}

// gradPad slices the input's part out of the gradient, for constant-mode
// padding with constant, non-negative pads over all axes.
func gradPad(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	x, g := n.Input[0], dy[0]
	if mode := graph.StringAttr(n, "mode", "constant"); mode != "constant" {
		e.fail("mode %q is not supported", mode)
		return nil
	}
	if inputOr(n, 3) != "" {
		e.fail("the axes input is not supported")
		return nil
	}
	pads, ok := e.inf.constInts(n, 1)
	if !ok {
		e.fail("the pads must be constant")
		return nil
	}
	r := len(pads) / 2
	starts, axes := make([]int64, r), make([]int64, r)
	for i := 0; i < r; i++ {
		if pads[i] < 0 || pads[r+i] < 0 {
			e.fail("negative pads (cropping) are not supported")
			return nil
		}
		starts[i], axes[i] = pads[i], int64(i)
	}
	ends := e.add(e.shapeOf(x), e.ints(starts...))
	gx := e.op("Slice", []string{g, e.ints(starts...), ends, e.ints(axes...)})
	e.inf.setShape(gx, e.shape(x))
	return []string{gx}
}

// gradTile sums the gradients of the copies: [r0·d0, r1·d1, …] is viewed
// as [r0, d0, r1, d1, …] and summed over the r axes. The repeats must be
// constant.
func gradTile(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	x, g := n.Input[0], dy[0]
	reps, ok := e.inf.constInts(n, 1)
	if !ok {
		e.fail("the repeats must be constant")
		return nil
	}
	var parts []string
	var axes []int64
	for i, r := range reps {
		parts = append(parts, e.ints(r), e.dimOf(x, int64(i)))
		axes = append(axes, int64(2*i))
	}
	view := e.op("Reshape", []string{g, e.concatInts(parts...)})
	gx := e.reduceSum(view, axes, false)
	e.inf.setShape(gx, e.shape(x))
	return []string{gx}
}

func gradTranspose(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	perm := graph.IntsAttr(n, "perm")
	if perm == nil {
		// The default reverses the axes, and is its own inverse.
		return []string{e.op("Transpose", []string{dy[0]})}
	}
	inv := make([]int64, len(perm))
	for i, p := range perm {
		inv[p] = int64(i)
	}
	return []string{e.transpose(dy[0], inv...)}
}

// gradConcat slices each input's part out of the gradient.
func gradConcat(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	axis := graph.IntAttr(n, "axis", 0)
	out := make([]string, len(n.Input))
	start := e.ints(0)
	for i, x := range n.Input {
		end := e.addInts(start, e.dimOf(x, axis))
		if need[i] {
			out[i] = e.op("Slice", []string{dy[0], start, end, e.ints(axis)})
			e.inf.setShape(out[i], e.shape(x))
		}
		start = end
	}
	return out
}

// addInts adds two 1-D int64 tensors, folding constants.
func (e *emitter) addInts(a, b string) string {
	va, oka := staticVals(e.inf.get(a).vals)
	vb, okb := staticVals(e.inf.get(b).vals)
	if oka && okb && len(va) == 1 && len(vb) == 1 && e.m.Initializer(a) != nil && e.m.Initializer(b) != nil {
		return e.ints(va[0] + vb[0])
	}
	return e.add(a, b)
}

// gradSplit joins the outputs' gradients, with zeros for outputs that got
// none.
func gradSplit(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	dt := e.typeOf(n.Input[0])
	parts := make([]string, len(n.Output))
	for i, o := range n.Output {
		parts[i] = dy[i]
		if parts[i] == "" {
			parts[i] = e.zerosLike(o, dt)
		}
	}
	gx := e.op("Concat", parts, graph.AttrInt("axis", graph.IntAttr(n, "axis", 0)))
	e.inf.setShape(gx, e.shape(n.Input[0]))
	return []string{gx}
}

// gradSlice puts the gradient back where the slice took its elements
// from. Where the parameters are constant, the steps 1 and the sliced dims
// known, that is a Pad with zeros. Otherwise, whatever the starts, ends,
// axes and steps (negative, clamped or computed), the same Slice is applied
// to a tensor that holds each element's flat index, and the gradient is
// scattered to those indices.
func gradSlice(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	x, g := n.Input[0], dy[0]
	if pads, ok := slicePads(e, n); ok {
		gx := e.op("Pad", []string{g, e.ints(pads...)})
		e.inf.setShape(gx, e.shape(x))
		return []string{gx}
	}
	dt := e.typeOf(x)
	size := e.sizeOf(x)
	flat := e.op("Range", []string{e.int0(0), size, e.int0(1)})
	idx := e.op("Reshape", []string{flat, e.shapeOf(x)})
	sliced := e.emit("", "Slice", append([]string{idx}, n.Input[1:]...), 1, n.Attribute...)[0]
	zeros := e.op("ConstantOfShape", []string{e.op("Reshape", []string{size, e.ints(1)})},
		graph.AttrTensor("value", graph.NewFloatTensor("", dt, []int64{1}, []float64{0})))
	scattered := e.op("ScatterElements", []string{zeros, e.op("Reshape", []string{sliced, e.ints(-1)}), e.op("Reshape", []string{g, e.ints(-1)})},
		graph.AttrInt("axis", 0))
	gx := e.op("Reshape", []string{scattered, e.shapeOf(x)})
	e.inf.setShape(gx, e.shape(x))
	return []string{gx}
}

// slicePads returns the Pad that undoes a Slice with constant parameters,
// steps of 1 and static sliced dims.
func slicePads(e *emitter, n *onnxpb.NodeProto) ([]int64, bool) {
	starts, ends, axes, steps, ok := e.inf.sliceParams(n)
	s := e.shape(n.Input[0])
	if !ok || !s.ok {
		return nil, false
	}
	r := s.rank()
	pads := make([]int64, 2*r)
	for i, a := range axes {
		j := normAxis(a, r)
		if steps[i] != 1 || j < 0 || j >= r || !s.dims[j].static() {
			return nil, false
		}
		d := s.dims[j].v
		st, en := starts[i], ends[i]
		if st < 0 {
			st += d
		}
		if en < 0 {
			en += d
		}
		st, en = min(max(st, 0), d), min(max(en, 0), d)
		en = max(en, st)
		pads[j], pads[r+j] = st, d-en
	}
	return pads, true
}

// gradGather adds each gathered slice's gradient into the row it came
// from; rows gathered more than once (a token that repeats in a batch)
// accumulate. From opset 16 a Gather on axis 0 uses ScatterND with
// reduction add. Otherwise the indices become a one-hot matrix H [K, n]
// and the gradient, seen as [P, K, Q], is multiplied by Hᵀ.
func gradGather(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	data, indices, g := n.Input[0], n.Input[1], dy[0]
	dt := e.typeOf(data)
	r := e.shape(data).rank()
	axis := graph.IntAttr(n, "axis", 0)
	if axis < 0 && r >= 0 {
		axis += int64(r)
	}
	idx := e.cast(indices, dtype.Int64)
	if axis == 0 && e.opset >= 16 {
		if !e.nonNegative(indices) {
			rows := e.op("Squeeze", []string{e.dimOf(data, 0), e.ints(0)})
			neg := e.op("Less", []string{idx, e.int0(0)})
			idx = e.op("Where", []string{neg, e.add(idx, rows), idx})
		}
		zeros := e.zerosLike(data, dt)
		gx := e.op("ScatterND", []string{zeros, e.unsqueeze(idx, -1), g}, graph.AttrString("reduction", "add"))
		e.inf.setShape(gx, e.shape(data))
		return []string{gx}
	}
	depth := e.dimOf(data, axis)
	oh := e.op("OneHot", []string{e.op("Reshape", []string{idx, e.ints(-1)}), depth, e.oneHotValues()}, graph.AttrInt("axis", -1))
	oh = e.cast(oh, dt)
	// View data as [P, n, Q]: P the product of the dims before axis, Q of
	// those after.
	pre := e.ints(1)
	if axis != 0 {
		pre = e.prodDims(data, 0, axis)
	}
	var post string
	if r >= 0 && axis >= 0 {
		post = e.prodDims(data, axis+1, int64(r))
	} else {
		size := e.op("Reshape", []string{e.sizeOf(data), e.ints(1)})
		post = e.div(size, e.op("Mul", []string{pre, depth}))
	}
	g3 := e.op("Reshape", []string{g, e.concatInts(pre, e.ints(-1), post)})
	res := e.op("MatMul", []string{e.transpose(oh, 1, 0), g3})
	gx := e.op("Reshape", []string{res, e.shapeOf(data)})
	e.inf.setShape(gx, e.shape(data))
	return []string{gx}
}

// nonNegative reports whether v is a constant with no negative values.
func (e *emitter) nonNegative(v string) bool {
	t := e.m.Initializer(v)
	if t == nil {
		if p := e.m.Producer(v); p != nil && p.OpType == "Constant" {
			if a := graph.Attr(p, "value"); a != nil {
				t = a.T
			}
		}
	}
	if t == nil || e.m.Input(v) != nil {
		return false
	}
	vs, err := e.m.Int64s(t)
	if err != nil {
		return false
	}
	for _, x := range vs {
		if x < 0 {
			return false
		}
	}
	return true
}

// prodDims returns the product of dims [from, to) of v as a 1-D int64
// tensor of one element; from < to, and to may be negative (counted from
// the end) when v's rank is unknown.
func (e *emitter) prodDims(v string, from, to int64) string {
	if s := e.shape(v); s.ok {
		if to < 0 {
			to += int64(s.rank())
		}
		if from >= to {
			return e.ints(1)
		}
		p := int64(1)
		for _, d := range s.dims[from:to] {
			if !d.static() {
				p = -1
				break
			}
			p *= d.v
		}
		if p >= 0 {
			return e.ints(p)
		}
	}
	part := e.op("Slice", []string{e.shapeOf(v), e.ints(from), e.ints(to), e.ints(0)})
	return e.reduce("ReduceProd", 18, part, []int64{0}, true)
}

// gradGatherElements adds each gathered element's gradient into the place
// it came from: ScatterElements with reduction add from opset 16, a
// one-hot product before.
func gradGatherElements(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	data, indices, g := n.Input[0], n.Input[1], dy[0]
	dt := e.typeOf(data)
	axis := graph.IntAttr(n, "axis", 0)
	if e.opset >= 16 {
		zeros := e.zerosLike(data, dt)
		gx := e.op("ScatterElements", []string{zeros, indices, g}, graph.AttrInt("axis", axis), graph.AttrString("reduction", "add"))
		e.inf.setShape(gx, e.shape(data))
		return []string{gx}
	}
	r := e.shape(data).rank()
	if r < 0 {
		e.fail("the rank of %q must be known", data)
		return nil
	}
	if axis < 0 {
		axis += int64(r)
	}
	// oh[..., i, j, ...] = (indices[..., i, ...] == j), with the new axis j
	// right after the gathered axis i; summing over i leaves data's shape.
	oh := e.op("OneHot", []string{e.cast(indices, dtype.Int64), e.dimOf(data, axis), e.oneHotValues()}, graph.AttrInt("axis", axis+1))
	prod := e.mul(e.cast(oh, dt), e.unsqueeze(g, axis+1))
	gx := e.reduceSum(prod, []int64{axis}, false)
	e.inf.setShape(gx, e.shape(data))
	return []string{gx}
}

// inferShape: the dims of the input from start to end, as values.
func inferShape(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(t)
}

// clampIndex turns a possibly negative index into one in [0, r].
func clampIndex(i int64, r int) int {
	if i < 0 {
		i += int64(r)
	}
	return int(min(max(i, 0), int64(r)))
}

// inferReshape: the target shape, with 0 copying the input's dim (unless
// allowzero) and −1 worked out from the element count where it can be.
func inferReshape(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(t)
}

// unsqueezeAxes returns the axes of an Unsqueeze or Squeeze node: the
// attribute before opset 13, the constant second input from then on.
func (f *inferer) unsqueezeAxes(n *onnxpb.NodeProto) ([]int64, bool) {
	if a := graph.Attr(n, "axes"); a != nil {
		return a.Ints, true
	}
	return f.constInts(n, 1)
}

// inferUnsqueeze: the input with size-1 axes inserted.
func inferUnsqueeze(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(t)
}

// inferSqueeze: the input without the given size-1 axes (every static
// one when none are given).
func inferSqueeze(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(t)
}

// inferConcat: the inputs joined along axis, and the joined values of
// 1-D integer tensors.
func inferConcat(f *inferer, n *onnxpb.NodeProto) []*tinfo {
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
	return one(t)
}

// splitSizes returns the sizes of a Split node's outputs along its axis,
// where they are known.
func (f *inferer) splitSizes(n *onnxpb.NodeProto, x *tinfo) ([]dim, bool) {
	if a := graph.Attr(n, "split"); a != nil {
		out := make([]dim, len(a.Ints))
		for i, s := range a.Ints {
			out[i] = known(s)
		}
		return out, true
	}
	if len(n.Input) > 1 && n.Input[1] != "" {
		// Computed sizes carry their dims, symbolic ones too (the rows
		// of an activation beside a constant count).
		sizes := f.get(n.Input[1]).vals
		return sizes, sizes != nil
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

// inferSplit: the input cut along axis into the outputs' sizes.
func inferSplit(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	sizes, ok := f.splitSizes(n, x)
	outs := make([]*tinfo, len(n.Output))
	for i := range n.Output {
		t := &tinfo{elem: x.elem, shape: unknownShape()}
		if ok && x.shape.ok && i < len(sizes) {
			a := normAxis(graph.IntAttr(n, "axis", 0), x.shape.rank())
			dims := append([]dim(nil), x.shape.dims...)
			dims[a] = sizes[i]
			t.shape = rankShape(dims...)
		}
		outs[i] = t
	}
	return outs
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

// inferSlice: the input with each sliced axis cut to its slice's length,
// and the values of a sliced 1-D integer tensor.
func inferSlice(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(t)
}

// inferGather: data with the gathered axis replaced by the indices' dims,
// and the values of a gathered 1-D integer tensor.
func inferGather(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(t)
}
