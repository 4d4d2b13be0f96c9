package feed

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Input describes one input or output of a model as the model declares
// it. Its fields are runtime.ValueInfo's, so that one converts to the
// other.
type Input struct {
	Name string
	// DType is Undefined where the value is not a plain tensor.
	DType dtype.Type
	// Shape holds -1 for a dynamic dimension; nil where no shape is
	// declared, empty for a scalar.
	Shape []int64
	// DimParams holds the symbolic name of each dynamic dimension ("" for
	// fixed or anonymous ones); nil with Shape.
	DimParams []string
	// Optional marks an input with a default value in the model.
	Optional bool
}

// String describes in as `input_ids int64[batch sequence]`.
func (in Input) String() string {
	s := in.Name + " " + in.DType.String()
	if in.Shape == nil {
		return s + "[?]"
	}
	dims := make([]string, len(in.Shape))
	for i, d := range in.Shape {
		switch {
		case d >= 0:
			dims[i] = fmt.Sprint(d)
		case i < len(in.DimParams) && in.DimParams[i] != "":
			dims[i] = in.DimParams[i]
		default:
			dims[i] = "?"
		}
	}
	return s + "[" + strings.Join(dims, " ") + "]"
}

// dimParam returns the name of dimension i, "" if it has none.
func (in Input) dimParam(i int) string {
	if i < len(in.DimParams) {
		return in.DimParams[i]
	}
	return ""
}

// FromValueInfo describes a graph input or output from its declaration.
// optional says whether the model gives the input a default (an
// initializer of the same name).
func FromValueInfo(v *onnxpb.ValueInfoProto, optional bool) Input {
	in := Input{Name: v.GetName(), Optional: optional}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return in
	}
	in.DType = dtype.Type(tt.GetElemType())
	if tt.GetShape() == nil {
		return in
	}
	dims := tt.GetShape().GetDim()
	in.Shape = make([]int64, len(dims))
	in.DimParams = make([]string, len(dims))
	for i, d := range dims {
		switch x := d.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			in.Shape[i] = max(x.DimValue, -1)
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			in.Shape[i] = -1
			in.DimParams[i] = x.DimParam
		default:
			in.Shape[i] = -1
		}
	}
	return in
}
