package models

import (
	"math/rand/v2"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// QDQLinear builds one linear layer in ONNX Runtime's QDQ int8 layout, as
// its static quantizer writes it: the float input x [batch, 8] goes
// through QuantizeLinear and DequantizeLinear (uint8, scale 1/32, zero
// point 128), the weight is the int8 initializer fc.weight_quantized
// [8, 6] behind a DequantizeLinear with fc.weight_scale and
// fc.weight_zero_point, per tensor, or per output column (axis 1) with
// perAxis, and a float bias fc.bias follows: y = dq(q(x))·dq(Wq) + b, the
// MatMul node /fc/MatMul. Values come from seed. It imports opset 13.
func QDQLinear(perAxis bool, seed uint64) (*graph.Model, error) {
	const in, out = 8, 6
	m := graph.New(&onnxpb.ModelProto{IrVersion: irVersion, ProducerName: "peftonnx/models", Graph: &onnxpb.GraphProto{Name: "qdq_linear"}}, "")
	m.SetOpset("", 13)
	rng := rand.New(rand.NewPCG(seed, 13))
	wq := make([]byte, in*out)
	for i := range wq {
		wq[i] = byte(int8(rng.IntN(255) - 127))
	}
	m.AddInitializer(&onnxpb.TensorProto{Name: "fc.weight_quantized", DataType: int32(dtype.Int8), Dims: []int64{in, out}, RawData: wq})
	scales := []float32{0.01}
	zeros := []byte{0}
	if perAxis {
		scales, zeros = make([]float32, out), make([]byte, out)
		for i := range scales {
			scales[i] = 0.005 + 0.002*float32(i)
		}
	}
	scaleDims := []int64{}
	if perAxis {
		scaleDims = []int64{out}
	}
	m.AddInitializer(graph.NewFloat32Tensor("fc.weight_scale", dtype.Float32, scaleDims, scales))
	m.AddInitializer(&onnxpb.TensorProto{Name: "fc.weight_zero_point", DataType: int32(dtype.Int8), Dims: scaleDims, RawData: zeros})
	bias := make([]float32, out)
	for i := range bias {
		bias[i] = float32(rng.NormFloat64() * 0.1)
	}
	m.AddInitializer(graph.NewFloat32Tensor("fc.bias", dtype.Float32, []int64{out}, bias))
	m.AddInitializer(graph.NewFloat32Tensor("x_scale", dtype.Float32, nil, []float32{1.0 / 32}))
	m.AddInitializer(&onnxpb.TensorProto{Name: "x_zero_point", DataType: int32(dtype.Uint8), RawData: []byte{128}})

	b := graph.NewBuilder(m, graph.BuilderOptions{Outputs: graph.OutputsAfterNode})
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{batchDim, sized(in)}))
	s := b.At("/fc")
	xq := s.Op("QuantizeLinear", []string{"x", "x_scale", "x_zero_point"})
	xd := s.Op("DequantizeLinear", []string{xq, "x_scale", "x_zero_point"})
	var wAttrs []*onnxpb.AttributeProto
	if perAxis {
		wAttrs = append(wAttrs, graph.AttrInt("axis", 1))
	}
	w := s.Op("DequantizeLinear", []string{"fc.weight_quantized", "fc.weight_scale", "fc.weight_zero_point"}, wAttrs...)
	y := s.Op("MatMul", []string{xd, w})
	opTo(s, "y", "Add", []string{y, "fc.bias"})
	m.AddOutput(graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{batchDim, sized(out)}))
	if err := m.Validate(); err != nil {
		return nil, errorf("qdq linear: built an invalid graph: %w", err)
	}
	return m, nil
}
