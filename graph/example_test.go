package graph_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
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
