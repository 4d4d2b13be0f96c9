package models

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// IR3MLP builds a two-layer perceptron as exporters for IR version 3
// wrote it, every initializer also listed as a graph input: x [batch, 4]
// float32 → Gemm (fc1.weight [8, 4], transB 1, fc1.bias) → Relu → MatMul
// (fc2.weight [8, 3]) → Add (fc2.bias) → y [batch, 3]. Nodes are named
// /fc1/Gemm, /fc1/Relu, /fc2/MatMul and /fc2/Add. It imports opset 8, as IR-3 exports do.
func IR3MLP(seed uint64) (*graph.Model, error) {
	ex := newExporter("ir3_mlp", dtype.Float32, seed, 0.5, false)
	m := ex.Model()
	m.Proto.IrVersion = 3
	m.SetOpset("", 8)
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{batchDim, sized(4)}))
	params := []struct {
		name string
		dims []int64
	}{{"fc1.weight", []int64{8, 4}}, {"fc1.bias", []int64{8}}, {"fc2.weight", []int64{8, 3}}, {"fc2.bias", []int64{3}}}
	for _, p := range params {
		ex.weight(p.name, p.dims...)
		m.AddInput(graph.TensorInfo(p.name, dtype.Float32, p.dims))
	}
	h := ex.At("/fc1").Op("Gemm", []string{"x", "fc1.weight", "fc1.bias"}, graph.AttrInt("transB", 1))
	h = ex.At("/fc1").Op("Relu", []string{h})
	y := ex.At("/fc2").Op("MatMul", []string{h, "fc2.weight"})
	opTo(ex.At("/fc2"), "y", "Add", []string{y, "fc2.bias"})
	m.AddOutput(&onnxpb.ValueInfoProto{Name: "y", Type: graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{batchDim, sized(3)}).Type})
	return ex.finish("ir3 mlp")
}
