package models

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// IfLinear builds a model whose linear layers sit inside the branches of
// an If node, as exporters write data-dependent control flow: inputs x
// [batch, 4] float32 and the bool scalar use_a; the If node /select/If
// computes y = x·a.weight (the MatMul /select/a/MatMul in then_branch,
// a.weight an initializer of the main graph) or y = x·b.weight (in
// else_branch, with b.weight an initializer of the branch itself). With
// outer, a main-graph linear layer /head/MatMul (head.weight [4, 4]) reads
// y and writes the output z; else y is the output. It imports opset 17.
func IfLinear(outer bool, seed uint64) (*graph.Model, error) {
	ex := newExporter("if_linear", dtype.Float32, seed, 0.5, false)
	m := ex.Model()
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{batchDim, sized(4)}))
	m.AddInput(graph.TensorInfo("use_a", dtype.Bool, nil))
	ex.weight("a.weight", 4, 4)
	local := ex.weight("b.weight", 4, 4)
	bw := m.RemoveInitializer(local)
	yInfo := graph.SymbolicTensorInfo("y_branch", dtype.Float32, []graph.Dim{batchDim, sized(4)})
	branch := func(name, module, w string, inits []*onnxpb.TensorProto) *onnxpb.GraphProto {
		return &onnxpb.GraphProto{
			Name:        name,
			Initializer: inits,
			Node:        []*onnxpb.NodeProto{{Name: "/select/" + module + "/MatMul", OpType: "MatMul", Input: []string{"x", w}, Output: []string{"y_branch"}}},
			Output:      []*onnxpb.ValueInfoProto{yInfo},
		}
	}
	y := "y"
	if outer {
		y = "select_out"
	}
	ex.At("/select").NodeTo("", "If", []string{"use_a"}, []string{y},
		&onnxpb.AttributeProto{Name: "then_branch", Type: onnxpb.AttributeProto_GRAPH, G: branch("then", "a", "a.weight", nil)},
		&onnxpb.AttributeProto{Name: "else_branch", Type: onnxpb.AttributeProto_GRAPH, G: branch("else", "b", "b.weight", []*onnxpb.TensorProto{bw})})
	out := y
	if outer {
		out = opTo(ex.At("/head"), "z", "MatMul", []string{y, ex.weight("head.weight", 4, 4)})
	}
	m.AddOutput(graph.SymbolicTensorInfo(out, dtype.Float32, []graph.Dim{batchDim, sized(4)}))
	return ex.finish("if linear")
}
