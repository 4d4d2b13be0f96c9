package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Ops that make tensors from attributes, shapes or indices: constants,
// ranges, one-hot codes, the positions of non-zeros and random draws. None
// has a gradient; their inference lets shapes and the values of small
// integer tensors (a mask's length, a Reshape's target) be followed
// through them.

func init() {
	register("", "Constant", entry{infer: inferConstant})
	register("", "ConstantOfShape", entry{infer: inferConstantOfShape})
	register("", "Range", entry{infer: inferRange})
	register("", "NonZero", entry{infer: inferNonZero})
	register("", "OneHot", entry{infer: inferOneHot})
	for _, op := range []string{"RandomUniformLike", "RandomNormalLike", "Bernoulli"} {
		register("", op, entry{infer: inferRandomLike})
	}
}

// inferConstant describes the value attribute, with the values of a small
// integer tensor.
func inferConstant(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	var t *tinfo
	for _, a := range n.Attribute {
		switch a.Name {
		case "value":
			if a.T != nil {
				t = f.fromTensor(a.T)
			}
		case "value_float":
			t = &tinfo{elem: dtype.Float32, shape: rankShape()}
		case "value_floats":
			t = &tinfo{elem: dtype.Float32, shape: rankShape(known(int64(len(a.Floats))))}
		case "value_int":
			t = &tinfo{elem: dtype.Int64, shape: rankShape(), vals: []dim{known(a.I)}}
		case "value_ints":
			vs := make([]dim, len(a.Ints))
			for i, v := range a.Ints {
				vs[i] = known(v)
			}
			t = &tinfo{elem: dtype.Int64, shape: rankShape(known(int64(len(a.Ints)))), vals: vs}
		}
	}
	return one(t)
}

// inferConstantOfShape: the shape its input's values give, in the type of
// its value attribute (float32 by default).
func inferConstantOfShape(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	dt := dtype.Float32
	if a := graph.Attr(n, "value"); a != nil && a.T != nil {
		dt = graph.TypeOf(a.T)
	}
	s := unknownShape()
	if vs := f.in(n, 0).vals; vs != nil {
		s = rankShape(vs...)
	}
	return one(&tinfo{elem: dt, shape: s})
}

// inferRange: a 1-D tensor, whose length is limit − start for a step of 1.
func inferRange(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	length := f.freshDim()
	st, lim, step := f.in(n, 0).vals, f.in(n, 1).vals, f.in(n, 2).vals
	if len(st) == 1 && len(lim) == 1 && len(step) == 1 && step[0].is(1) {
		length = f.addDims(lim[0], st[0], -1)
	}
	return one(&tinfo{elem: f.in(n, 0).elem, shape: rankShape(length)})
}

// inferNonZero: [rank, an unknown count] of int64.
func inferNonZero(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: dtype.Int64, shape: rankShape(known(int64(f.in(n, 0).shape.rank())), f.freshDim())})
}

// inferOneHot: the indices' shape with the depth inserted at axis, in the
// type of the values input.
func inferOneHot(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
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
	return one(&tinfo{elem: f.in(n, 2).elem, shape: s})
}

// inferRandomLike: the input's shape, in the dtype attribute's type or the
// input's.
func inferRandomLike(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	dt := x.elem
	if a := graph.Attr(n, "dtype"); a != nil {
		dt = dtype.Type(a.I)
	}
	return one(&tinfo{elem: dt, shape: x.shape})
}
