package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// QDQ int8 models (ONNX Runtime's quantizer): QuantizeLinear and
// DequantizeLinear have no gradient, only inference, so that LoRA trains
// on the float side of a QDQ layer. An integer value carries no gradient,
// so none flows back through an activation's QuantizeLinear: LoRA factors
// train where the loss reaches them without crossing one.

func init() {
	register("", "QuantizeLinear", entry{infer: inferQuantize})
	register("", "DequantizeLinear", entry{infer: inferDequantize})
}

// inferQuantize: x's shape, in the zero point's type (uint8 without one).
func inferQuantize(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	elem := dtype.Uint8
	if len(n.Input) > 2 && n.Input[2] != "" {
		if zp := f.in(n, 2); zp.elem != dtype.Undefined {
			elem = zp.elem
		}
	}
	if to := graph.IntAttr(n, "output_dtype", 0); to != 0 {
		elem = dtype.Type(to)
	}
	return one(&tinfo{elem: elem, shape: f.in(n, 0).shape})
}

// inferDequantize: x's shape, in the scale's type.
func inferDequantize(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: f.in(n, 1).elem, shape: f.in(n, 0).shape})
}
