package rewrite

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// A QDQ model (int8 quantization as ONNX Runtime's quantizer writes it)
// stores a linear layer's weight as an integer initializer that a
// DequantizeLinear turns into floats: MatMul(x, DequantizeLinear(Wq, scale,
// zero_point)). LoRA adapts the float side: the branch reads the float
// activation and adds to the float output, and the int8 weight stays as it
// is. A merge cannot be exact in int8, since W + s·A·B is not on the
// quantization grid; MergeOptions can merge into a dequantized float weight
// instead (DequantizeMerged).

// dequantizedWeight reports whether DequantizeLinear p dequantizes an
// integer initializer of the given rank, and returns it and the element
// type of p's output (its scale's).
func dequantizedWeight(m *graph.Model, p *onnxpb.NodeProto, rank int) (*onnxpb.TensorProto, dtype.Type, bool) {
	if len(p.Input) < 2 {
		return nil, 0, false
	}
	t, scale := m.Initializer(p.Input[0]), m.Initializer(p.Input[1])
	if t == nil || scale == nil || len(t.Dims) != rank || graph.TypeOf(t).IsFloat() || !graph.TypeOf(scale).IsFloat() {
		return nil, 0, false
	}
	return t, graph.TypeOf(scale), true
}

// Dequantized reports whether l's weight is an integer initializer behind
// a DequantizeLinear.
func (l Linear) Dequantized() bool {
	return len(l.WeightChain) > 0 && l.WeightChain[0].OpType == "DequantizeLinear"
}

// checkMergeable refuses to merge into a quantized weight.
func checkMergeable(l Linear) error {
	if l.Dequantized() {
		return layerErr(l, "weight %q is %s behind DequantizeLinear %q: W + s·A·B is not on its quantization grid, so a merge cannot be exact in %s; keep the branch, or merge into a dequantized float weight (peftonnx merge --dequantize)",
			l.Weight, l.WeightDType, l.WeightChain[0].Name, l.WeightDType)
	}
	return nil
}
