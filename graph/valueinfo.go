package graph

import (
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Dim is one dimension of a declared tensor shape: a fixed size, a named
// dynamic dimension (ONNX's dim_param, such as "batch_size"), or an
// unknown one. The zero Dim is unknown.
type Dim struct {
	size  int64
	param string
	fixed bool
}

// DimValue returns the dimension of fixed size n; a negative n gives an
// unknown dimension, as in the shapes ValueShape returns.
func DimValue(n int64) Dim {
	if n < 0 {
		return Dim{}
	}
	return Dim{size: n, fixed: true}
}

// DimParam returns the dynamic dimension called name; "" gives an
// unknown dimension.
func DimParam(name string) Dim { return Dim{param: name} }

// DimValues returns the fixed dimensions sizes (negative ones unknown).
func DimValues(sizes []int64) []Dim {
	dims := make([]Dim, len(sizes))
	for i, n := range sizes {
		dims[i] = DimValue(n)
	}
	return dims
}

// Value returns d's size, and whether d is fixed.
func (d Dim) Value() (int64, bool) { return d.size, d.fixed }

// Param returns the name of a named dynamic dimension, or "".
func (d Dim) Param() string { return d.param }

// String returns the size, the name, or "?" for an unknown dimension.
func (d Dim) String() string {
	switch {
	case d.fixed:
		return strconv.FormatInt(d.size, 10)
	case d.param != "":
		return d.param
	}
	return "?"
}

// proto returns d as a TensorShapeProto dimension.
func (d Dim) proto() *onnxpb.TensorShapeProto_Dimension {
	switch {
	case d.fixed:
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.size}}
	case d.param != "":
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.param}}
	}
	return &onnxpb.TensorShapeProto_Dimension{}
}

// TensorInfo returns the declaration of a tensor value of element type dt
// and fixed shape dims; a negative dim is unknown, and nil dims declare a
// scalar.
func TensorInfo(name string, dt dtype.Type, dims []int64) *onnxpb.ValueInfoProto {
	return SymbolicTensorInfo(name, dt, DimValues(dims))
}

// SymbolicTensorInfo returns the declaration of a tensor value of element
// type dt whose dims may be fixed, named or unknown; nil dims declare a
// scalar.
func SymbolicTensorInfo(name string, dt dtype.Type, dims []Dim) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, d.proto())
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dt), Shape: shape}}}}
}

// ValueShape returns the element type and dims of a tensor value info; a
// dynamic dim is -1. ok is false when v is not a tensor or has no shape.
func ValueShape(v *onnxpb.ValueInfoProto) (elemType dtype.Type, dims []int64, ok bool) {
	elemType, ds, ok := ValueDims(v)
	for _, d := range ds {
		n, fixed := d.Value()
		if !fixed {
			n = -1
		}
		dims = append(dims, n)
	}
	return elemType, dims, ok
}

// ValueDims returns the element type and dims of a tensor value info,
// named dims by their names. ok is false when v is not a tensor or has no
// shape.
func ValueDims(v *onnxpb.ValueInfoProto) (elemType dtype.Type, dims []Dim, ok bool) {
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return dtype.Undefined, nil, false
	}
	if tt.Shape == nil {
		return dtype.Type(tt.ElemType), nil, false
	}
	for _, d := range tt.Shape.Dim {
		switch dv := d.Value.(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			dims = append(dims, DimValue(dv.DimValue))
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			dims = append(dims, DimParam(dv.DimParam))
		default:
			dims = append(dims, Dim{})
		}
	}
	return dtype.Type(tt.ElemType), dims, true
}
