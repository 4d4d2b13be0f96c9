package graph

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TypeOf returns the element type of tensor t; Undefined for a nil t.
// TensorProto keeps it as an int32, in the same ONNX numbering.
func TypeOf(t *onnxpb.TensorProto) dtype.Type { return dtype.Type(t.GetDataType()) }
