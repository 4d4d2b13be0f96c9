package rewrite

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
)

// Quantized linear layers: ONNX Runtime's com.microsoft MatMulNBits, the
// int4 (2-, 8-bit) layer of the onnxruntime-genai model builder's models,
// Y = A·dequantize(B) (+ bias). The layer's features are the node's K and
// N attributes; its weight is the packed B initializer, which a LoRA
// branch leaves as it is: the branch is float, reads A and adds to Y, as
// for a MatMul. Module names come from the node path as for MatMul
// ("/model/layers.0/attn/q_proj/MatMul_Q4" → model.layers.0.attn.q_proj),
// else from B's name ("….q_proj.MatMul.weight_Q4").

// OpMatMulNBits is Linear.Op of a quantized layer.
const OpMatMulNBits = quant.OpType

// Quantized reports whether l is a MatMulNBits layer, whose weight is
// packed: merging into it needs dequantizing (see Merge).
func (l Linear) Quantized() bool { return l.Op == OpMatMulNBits }

// nbitsLinearOf describes a MatMulNBits node n as a linear layer: B, the
// scales (and zero points, where given) initializers, a layout ONNX
// Runtime runs, no g_idx (act-order weights are not adapted), and A a
// computed value.
func nbitsLinearOf(m *graph.Model, n *onnxpb.NodeProto) (Linear, bool) {
	if len(n.Input) <= quant.InputScales || len(n.Output) < 1 || n.Input[quant.InputA] == "" || m.Initializer(n.Input[quant.InputA]) != nil {
		return Linear{}, false
	}
	l, err := quant.LayoutOf(n)
	if err != nil {
		return Linear{}, false
	}
	b, scales := m.Initializer(n.Input[quant.InputB]), m.Initializer(n.Input[quant.InputScales])
	if b == nil || scales == nil || m.Input(b.Name) != nil || !graph.TypeOf(scales).IsFloat() {
		return Linear{}, false
	}
	if len(n.Input) > quant.InputGIdx && n.Input[quant.InputGIdx] != "" {
		return Linear{}, false
	}
	lin := Linear{
		Node: n, NodeName: n.Name, Op: OpMatMulNBits,
		Input: n.Input[quant.InputA], Output: n.Output[0],
		Weight:      b.Name,
		WeightDType: graph.TypeOf(b), DType: graph.TypeOf(scales),
		In: int64(l.K), Out: int64(l.N),
		Alpha: 1, Beta: 1,
		SharedWeight: len(m.Consumers(b.Name)) > 1,
	}
	if len(n.Input) > quant.InputBias && n.Input[quant.InputBias] != "" {
		if m.Initializer(n.Input[quant.InputBias]) != nil {
			lin.Bias = n.Input[quant.InputBias]
		}
	} else {
		lin.Bias = biasAfter(m, lin.Output)
	}
	return lin, true
}

// quantizedParams maps the tensors of m's MatMulNBits layers to the
// parameters they count for: K·N for the packed B, 0 for the scales and
// zero points, which are how the weight is stored, not more weights.
func quantizedParams(m *graph.Model) map[string]int64 {
	out := map[string]int64{}
	for _, n := range m.Graph().Node {
		if !quant.IsNode(n) {
			continue
		}
		l, err := quant.LayoutOf(n)
		if err != nil || len(n.Input) <= quant.InputScales {
			continue
		}
		out[n.Input[quant.InputB]] = int64(l.K) * int64(l.N)
		for _, name := range n.Input[quant.InputScales:min(len(n.Input), quant.InputBias)] {
			if name != "" {
				out[name] = 0
			}
		}
	}
	return out
}
