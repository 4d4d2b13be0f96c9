package graph_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Build a one-node model, save it with external data, and load it back.
func Example() {
	m := graph.New(nil2(), "")
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(4)}))
	m.AddInitializer(graph.NewFloat32Tensor("w", dtype.Float32, []int64{4, 2}, []float32{1, 2, 3, 4, 5, 6, 7, 8}))
	m.NewNode("MatMul", "/proj/MatMul", []string{"x", "w"}, []string{"y"})
	m.AddOutput(graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(2)}))
	if err := m.Validate(); err != nil {
		fmt.Println(err)
		return
	}

	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true, Threshold: 16}); err != nil {
		fmt.Println(err)
		return
	}
	back, err := graph.Load(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer back.Close()
	w, _ := back.Float32s(back.Initializer("w"))
	fmt.Println(back.Producer("y").Name, w)
	// Output: /proj/MatMul [1 2 3 4 5 6 7 8]
}

// Build y = relu(x·w + 1) with a Builder: nodes named after their scope,
// a shared constant, and a hook that sees every node.
func ExampleBuilder() {
	m := graph.New(nil2(), "")
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(2)}))
	b := graph.NewBuilder(m, graph.BuilderOptions{Scope: "/model", OnNode: func(n *onnxpb.NodeProto) {
		fmt.Println(n.OpType, n.Name, n.Output)
	}})
	proj := b.In("proj")
	w := proj.Initializer("proj.weight", graph.NewFloat32Tensor("", dtype.Float32, []int64{2, 2}, []float32{1, 0, 0, 1}))
	h := proj.Op("MatMul", []string{"x", w})
	h = proj.Op("Add", []string{h, b.Scalar(dtype.Float32, 1)})
	b.NodeTo("", "Relu", []string{h}, []string{"y"})
	m.AddOutput(graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(2)}))
	fmt.Println(m.Validate())
	// Output:
	// MatMul /model/proj/MatMul [/model/proj/MatMul_output_0]
	// Add /model/proj/Add [/model/proj/Add_output_0]
	// Relu /model/Relu [y]
	// <nil>
}
