package train

import (
	"github.com/peftonnx/peftonnx/graph"
)

// trainingOpset is the default-domain opset that the losses and the
// gradient graph are written in.
const trainingOpset = 11

// sameFromOpset7 lists the default-domain ops whose meaning, attributes
// and inputs are the same at every opset from 7 up to trainingOpset: a
// graph made only of them computes the same when it imports
// trainingOpset. Ops whose forms changed in between (Slice, Clip, Pad,
// Dropout, BatchNormalization, Upsample, TopK, …) are not in it.
var sameFromOpset7 = map[string]bool{
	"Abs": true, "Add": true, "And": true, "Cast": true, "Concat": true, "Constant": true, "Conv": true,
	"Div": true, "Equal": true, "Exp": true, "Flatten": true, "Gather": true, "Gemm": true, "Greater": true,
	"Identity": true, "Less": true, "Log": true, "LogSoftmax": true, "MatMul": true, "Mul": true, "Neg": true,
	"Not": true, "Or": true, "Pow": true, "Reciprocal": true, "ReduceMean": true, "ReduceSum": true,
	"Relu": true, "Reshape": true, "Shape": true, "Sigmoid": true, "Softmax": true, "Sqrt": true,
	"Squeeze": true, "Sub": true, "Sum": true, "Tanh": true, "Transpose": true, "Unsqueeze": true,
}

// raiseOpset makes m, the trainer's own copy of a model that imports
// default-domain opset 7 to 10 (IR-3 exports import 8), import
// trainingOpset, where every op of its main graph means the same there
// (sameFromOpset7), so that the losses and gradients can be written. It
// reports whether it did; a model with other ops is left as it is, and
// the loss then names the opset it needs.
func raiseOpset(m *graph.Model) bool {
	opset := m.Opset("")
	if opset < 7 || opset >= trainingOpset {
		return false
	}
	for _, n := range m.Graph().Node {
		if (n.Domain != "" && n.Domain != "ai.onnx") || !sameFromOpset7[n.OpType] {
			return false
		}
	}
	m.SetOpset("", trainingOpset)
	return true
}
