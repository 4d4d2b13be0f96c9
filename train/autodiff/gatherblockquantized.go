package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// com.microsoft GatherBlockQuantized, the int4 (8-bit) token embedding of
// the onnxruntime-genai model builder's quantized models: rows of a
// block-quantized table gathered and dequantized. The packed table is
// frozen and the indices are integers, so no gradient flows through it:
// the op has inference and no rule, and a path from a trainable value
// never reaches it (LoRA on such an embedding puts its branch beside it).

func init() {
	register("com.microsoft", "GatherBlockQuantized", entry{infer: inferGatherBlockQuantized})
}

// inferGatherBlockQuantized: Gather's shape rule on gather_axis, the
// quantize_axis dim of uint8 data times the codes a byte holds, the
// scales' element type.
func inferGatherBlockQuantized(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	data, idx, scales := f.in(n, 0), f.in(n, 1), f.in(n, 2)
	t := &tinfo{elem: scales.elem, shape: unknownShape()}
	if !data.shape.ok || !idx.shape.ok {
		return one(t)
	}
	r := data.shape.rank()
	g := normAxis(graph.IntAttr(n, "gather_axis", 0), r)
	q := normAxis(graph.IntAttr(n, "quantize_axis", 1), r)
	if g < 0 || g >= r || q < 0 || q >= r {
		return one(t)
	}
	dims := append([]dim(nil), data.shape.dims...)
	if data.elem == dtype.Uint8 {
		d := dims[q]
		if !d.static() {
			return one(t)
		}
		dims[q] = known(d.v * (8 / max(1, graph.IntAttr(n, "bits", 4))))
	}
	out := append(append(append([]dim(nil), dims[:g]...), idx.shape.dims...), dims[g+1:]...)
	t.shape = rankShape(out...)
	return one(t)
}
