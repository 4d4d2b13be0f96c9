package rewrite

import (
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// inputBranchModel builds y = Gemm(x, Wᵀ stored [4, 3], transB, alpha 2)
// + (x·A·0.5)·B with A and B graph inputs of dynamic rank, as exporters
// with adapters as inputs build it.
func inputBranchModel() *graph.Model {
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, Graph: &onnxpb.GraphProto{Name: "g"}}, "")
	m.SetOpset("", 17)
	r := graph.DimParam("rank")
	m.AddInput(graph.TensorInfo("x", dtype.Float32, []int64{2, 3}))
	m.AddInput(graph.SymbolicTensorInfo("a", dtype.Float32, []graph.Dim{graph.DimValue(3), r}))
	m.AddInput(graph.SymbolicTensorInfo("b", dtype.Float32, []graph.Dim{r, graph.DimValue(4)}))
	w := make([]float32, 12)
	for i := range w {
		w[i] = float32(i) * 0.1
	}
	m.AddInitializer(graph.NewFloat32Tensor("w", dtype.Float32, []int64{4, 3}, w))
	m.AddInitializer(graph.NewFloat32Tensor("a", dtype.Float32, []int64{3, 0}, nil))
	m.AddInitializer(graph.NewFloat32Tensor("b", dtype.Float32, []int64{0, 4}, nil))
	m.AddInitializer(graph.NewFloat32Tensor("half", dtype.Float32, nil, []float32{0.5}))
	m.NewNode("Gemm", "base", []string{"x", "w"}, []string{"y"}, graph.AttrInt("transB", 1), graph.AttrFloat("alpha", 2))
	m.NewNode("MatMul", "la", []string{"x", "a"}, []string{"t"})
	m.NewNode("Mul", "ls", []string{"t", "half"}, []string{"ts"})
	m.NewNode("MatMul", "lb", []string{"ts", "b"}, []string{"u"})
	m.NewNode("Add", "sum", []string{"y", "u"}, []string{"out"})
	m.AddOutput(graph.TensorInfo("out", dtype.Float32, []int64{2, 4}))
	return m
}

// TestMergeInputs checks that merging input-named factors through a
// scaling Mul, a transposed weight and a Gemm alpha computes what feeding
// them does, and refuses a parameter that is no branch factor.
func TestMergeInputs(t *testing.T) {
	needORT(t)
	params := map[string]*adapter.Tensor{
		"a": {DType: dtype.Float32, Shape: []int64{3, 2}, Data: []float32{1, -2, 0.5, 3, -1, 2}},
		"b": {DType: dtype.Float32, Shape: []int64{2, 4}, Data: []float32{0.5, 1, -1, 2, 3, -0.5, 1, 0}},
	}
	x, _ := rt.NewFloat32([]int64{2, 3}, []float32{1, 2, 3, -1, 0.5, 2})
	outOf := func(m *graph.Model) []float32 {
		s := session(t, m)
		res := run(t, s, map[string]*rt.Tensor{"x": x})
		return res["out"].ToFloat32()
	}
	fed := inputBranchModel()
	if err := ApplyInputs(fed, params); err != nil {
		t.Fatal(err)
	}
	want := outOf(fed)
	m := inputBranchModel()
	if err := MergeInputs(m, params); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Graph().Node); n != 1 || m.Input("a") != nil || m.Initializer("b") != nil {
		t.Errorf("merged model has %d nodes and keeps the factor inputs", n)
	}
	got := outOf(m)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("merged out[%d] = %v, fed %v", i, got[i], want[i])
		}
	}
	// A branch factor whose partner is not given cannot be merged.
	m = inputBranchModel()
	if err := MergeInputs(m, map[string]*adapter.Tensor{"a": params["a"]}); err == nil {
		t.Errorf("merging A alone gave no error")
	}
}
