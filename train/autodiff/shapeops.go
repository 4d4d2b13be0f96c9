package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Ops that move elements around without changing them: the gradient moves
// them back. Shape, index and axes inputs get no gradient.

func init() {
	reshapeBack := func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		return []string{e.reshapeLike(dy[0], n.Input[0])}
	}
	register("", "Reshape", reshapeBack, 0)
	register("", "Flatten", reshapeBack, 0)
	register("", "Squeeze", reshapeBack, 0)
	register("", "Unsqueeze", reshapeBack, 0)
	register("", "Expand", func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		return []string{e.unbroadcast(dy[0], n.Input[0])}
	}, 0)
	register("", "Transpose", gradTranspose)
	register("", "Concat", gradConcat)
	register("", "Split", gradSplit, 0)
	register("", "Slice", gradSlice, 0)
	register("", "Gather", gradGather, 0)
	register("", "GatherElements", gradGatherElements, 0)
	register("", "Pad", gradPad, 0)
	register("", "Tile", gradTile, 0)
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
	e.inf.info[gx].shape = e.shape(x)
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
	e.inf.info[gx].shape = e.shape(x)
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
			e.inf.info[out[i]].shape = e.shape(x)
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
	e.inf.info[gx].shape = e.shape(n.Input[0])
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
		e.inf.info[gx].shape = e.shape(x)
		return []string{gx}
	}
	dt := e.typeOf(x)
	size := e.sizeOf(x)
	flat := e.op("Range", []string{e.int0(0), size, e.int0(1)})
	idx := e.op("Reshape", []string{flat, e.shapeOf(x)})
	sliced := e.emit("", "Slice", append([]string{idx}, n.Input[1:]...), 1, n.Attribute...)[0]
	zeros := e.op("ConstantOfShape", []string{e.op("Reshape", []string{size, e.ints(1)})},
		graph.AttrTensor("value", floatTensor("", dt, []int64{1}, 0)))
	scattered := e.op("ScatterElements", []string{zeros, e.op("Reshape", []string{sliced, e.ints(-1)}), e.op("Reshape", []string{g, e.ints(-1)})},
		graph.AttrInt("axis", 0))
	gx := e.op("Reshape", []string{scattered, e.shapeOf(x)})
	e.inf.info[gx].shape = e.shape(x)
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
		e.inf.info[gx].shape = e.shape(data)
		return []string{gx}
	}
	depth := e.dimOf(data, axis)
	oh := e.op("OneHot", []string{e.op("Reshape", []string{idx, e.ints(-1)}), depth, e.constant("onehot_values_float", func(name string) *onnxpb.TensorProto {
		return graph.NewFloat32Tensor(name, dtype.Float32, []int64{2}, []float32{0, 1})
	})}, graph.AttrInt("axis", -1))
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
	e.inf.info[gx].shape = e.shape(data)
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
		e.inf.info[gx].shape = e.shape(data)
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
	oh := e.op("OneHot", []string{e.cast(indices, dtype.Int64), e.dimOf(data, axis), e.constant("onehot_values_float", func(name string) *onnxpb.TensorProto {
		return graph.NewFloat32Tensor(name, dtype.Float32, []int64{2}, []float32{0, 1})
	})}, graph.AttrInt("axis", axis+1))
	prod := e.mul(e.cast(oh, dt), e.unsqueeze(g, axis+1))
	gx := e.reduceSum(prod, []int64{axis}, false)
	e.inf.info[gx].shape = e.shape(data)
	return []string{gx}
}
