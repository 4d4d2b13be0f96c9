package models

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// NonTensorConfig says which outputs NonTensorOutputs gives its model.
type NonTensorConfig struct {
	// Classes is the number of classes; 0 means 3.
	Classes int
	// Scores adds the float32 output "scores" [batch, classes], a tensor
	// that any caller can fetch. Without it, every output is a string
	// tensor or a sequence.
	Scores bool
}

// NonTensorOutputs builds a classifier whose outputs are not all numeric
// tensors, as scikit-learn's ONNX exports have them: from the input x
// float32 [batch, classes], "label" (a string tensor [batch], the class
// with the largest score written as a number: ArgMax, then Cast to
// string) and "probabilities" (a sequence of maps from class to score,
// ai.onnx.ml's ZipMap over the softmax), and with Scores the softmax
// itself. It imports opset 17 and ai.onnx.ml 1.
func NonTensorOutputs(c NonTensorConfig) (*graph.Model, error) {
	if c.Classes < 0 {
		return nil, errorf("non-tensor outputs: classes %d", c.Classes)
	}
	if c.Classes == 0 {
		c.Classes = 3
	}
	m := graph.New(&onnxpb.ModelProto{IrVersion: irVersion, ProducerName: "peftonnx/models", Graph: &onnxpb.GraphProto{Name: "nontensor"}}, "")
	m.SetOpset("", Opset)
	m.SetOpset("ai.onnx.ml", 1)
	b := graph.NewBuilder(m, graph.BuilderOptions{Outputs: graph.OutputsAfterNode, ConstantNodes: true})
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{batchDim, sized(c.Classes)}))
	p := b.Op("Softmax", []string{"x"}, graph.AttrInt("axis", -1))
	if c.Scores {
		b.NodeTo("", "Identity", []string{p}, []string{"scores"})
		m.AddOutput(graph.SymbolicTensorInfo("scores", dtype.Float32, []graph.Dim{batchDim, sized(c.Classes)}))
	}
	best := b.Op("ArgMax", []string{p}, graph.AttrInt("axis", 1), graph.AttrInt("keepdims", 0))
	b.NodeTo("", "Cast", []string{best}, []string{"label"}, graph.AttrInt("to", int64(dtype.String)))
	m.AddOutput(graph.SymbolicTensorInfo("label", dtype.String, []graph.Dim{batchDim}))
	classes := make([]int64, c.Classes)
	for i := range classes {
		classes[i] = int64(i)
	}
	b.NodeTo("ai.onnx.ml", "ZipMap", []string{p}, []string{"probabilities"}, graph.AttrInts("classlabels_int64s", classes...))
	m.AddOutput(&onnxpb.ValueInfoProto{Name: "probabilities", Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_SequenceType{
		SequenceType: &onnxpb.TypeProto_Sequence{ElemType: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_MapType{MapType: &onnxpb.TypeProto_Map{
			KeyType:   int32(dtype.Int64),
			ValueType: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dtype.Float32)}}},
		}}}},
	}}})
	if err := m.Validate(); err != nil {
		return nil, errorf("non-tensor outputs: built an invalid graph: %w", err)
	}
	return m, nil
}
