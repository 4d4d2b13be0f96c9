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
	q := newQDQ("qdq_linear", seed)
	q.layer("fc", "x", "y", 8, 6, perAxis)
	q.m.AddOutput(graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{batchDim, sized(6)}))
	return q.finish()
}

// QDQMLP is QDQLinear's layout twice: fc1 [8, 8] per tensor, whose output
// is quantized again (uint8, scale 1/32, zero point 128) before fc2
// [8, 6] per axis reads it. A gradient that reaches fc1 from the loss
// crosses a QuantizeLinear.
func QDQMLP(seed uint64) (*graph.Model, error) {
	q := newQDQ("qdq_mlp", seed)
	q.layer("fc1", "x", "h", 8, 8, false)
	q.layer("fc2", "h", "y", 8, 6, true)
	q.m.AddOutput(graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{batchDim, sized(6)}))
	return q.finish()
}

// qdqBuilder lays out QDQ layers.
type qdqBuilder struct {
	m   *graph.Model
	b   *graph.Builder
	rng *rand.Rand
}

func newQDQ(name string, seed uint64) *qdqBuilder {
	m := graph.New(&onnxpb.ModelProto{IrVersion: irVersion, ProducerName: "peftonnx/models", Graph: &onnxpb.GraphProto{Name: name}}, "")
	m.SetOpset("", 13)
	m.AddInitializer(graph.NewFloat32Tensor("act_scale", dtype.Float32, nil, []float32{1.0 / 32}))
	m.AddInitializer(&onnxpb.TensorProto{Name: "act_zero_point", DataType: int32(dtype.Uint8), RawData: []byte{128}})
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{batchDim, sized(8)}))
	return &qdqBuilder{m: m, b: graph.NewBuilder(m, graph.BuilderOptions{Outputs: graph.OutputsAfterNode}), rng: rand.New(rand.NewPCG(seed, 13))}
}

// layer adds out = dq(q(x))·dq(Wq) + bias under /module.
func (q *qdqBuilder) layer(module, x, out string, in, width int, perAxis bool) {
	m := q.m
	wq := make([]byte, in*width)
	for i := range wq {
		wq[i] = byte(int8(q.rng.IntN(255) - 127))
	}
	m.AddInitializer(&onnxpb.TensorProto{Name: module + ".weight_quantized", DataType: int32(dtype.Int8), Dims: []int64{int64(in), int64(width)}, RawData: wq})
	scales, zeros, scaleDims := []float32{0.01}, []byte{0}, []int64{}
	if perAxis {
		scales, zeros, scaleDims = make([]float32, width), make([]byte, width), []int64{int64(width)}
		for i := range scales {
			scales[i] = 0.005 + 0.002*float32(i)
		}
	}
	m.AddInitializer(graph.NewFloat32Tensor(module+".weight_scale", dtype.Float32, scaleDims, scales))
	m.AddInitializer(&onnxpb.TensorProto{Name: module + ".weight_zero_point", DataType: int32(dtype.Int8), Dims: scaleDims, RawData: zeros})
	bias := make([]float32, width)
	for i := range bias {
		bias[i] = float32(q.rng.NormFloat64() * 0.1)
	}
	m.AddInitializer(graph.NewFloat32Tensor(module+".bias", dtype.Float32, []int64{int64(width)}, bias))

	s := q.b.At("/" + module)
	xq := s.Op("QuantizeLinear", []string{x, "act_scale", "act_zero_point"})
	xd := s.Op("DequantizeLinear", []string{xq, "act_scale", "act_zero_point"})
	var wAttrs []*onnxpb.AttributeProto
	if perAxis {
		wAttrs = append(wAttrs, graph.AttrInt("axis", 1))
	}
	w := s.Op("DequantizeLinear", []string{module + ".weight_quantized", module + ".weight_scale", module + ".weight_zero_point"}, wAttrs...)
	y := s.Op("MatMul", []string{xd, w})
	opTo(s, out, "Add", []string{y, module + ".bias"})
}

func (q *qdqBuilder) finish() (*graph.Model, error) {
	if err := q.m.Validate(); err != nil {
		return nil, errorf("%s: built an invalid graph: %w", q.m.Graph().Name, err)
	}
	return q.m, nil
}
