package autodiff_test

import (
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// A linear layer with a LoRA branch, y = x·W + x·A·B, and the loss
// ReduceSum(y): only A and B are trained.
func ExampleBuild() {
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}}, "")
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(4)}))
	m.AddInitializer(graph.NewFloat32Tensor("W", dtype.Float32, []int64{4, 3}, make([]float32, 12)))
	m.AddInitializer(graph.NewFloat32Tensor("A", dtype.Float32, []int64{4, 2}, make([]float32, 8)))
	m.AddInitializer(graph.NewFloat32Tensor("B", dtype.Float32, []int64{2, 3}, make([]float32, 6)))
	m.NewNode("MatMul", "base", []string{"x", "W"}, []string{"xw"})
	m.NewNode("MatMul", "lora_a", []string{"x", "A"}, []string{"xa"})
	m.NewNode("MatMul", "lora_b", []string{"xa", "B"}, []string{"xab"})
	m.NewNode("Add", "add", []string{"xw", "xab"}, []string{"y"})
	m.NewNode("ReduceSum", "loss", []string{"y"}, []string{"loss"}, graph.AttrInt("keepdims", 0))

	train, err := autodiff.Build(m, "loss", []string{"A", "B"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range train.Graph().Input {
		fmt.Println("input:", v.Name)
	}
	for _, v := range train.Graph().Output {
		fmt.Println("output:", v.Name)
	}
	fmt.Println("W is still an initializer:", train.Initializer("W") != nil)
	// Output:
	// input: x
	// input: A
	// input: B
	// output: loss
	// output: grad.A
	// output: grad.B
	// W is still an initializer: true
}
