package runtime

import "fmt"

// DType is the element type of a tensor. Its values are the ONNX
// TensorProto.DataType numbers, so a DType read from a model needs no
// translation.
type DType int32

// The element types that tensors in this package can hold. Float16 and
// BFloat16 elements are stored as their raw 16-bit patterns in a []uint16;
// package github.com/peftonnx/peftonnx/internal/half converts them.
const (
	Undefined DType = 0
	Float32   DType = 1
	Uint8     DType = 2
	Int8      DType = 3
	Uint16    DType = 4
	Int16     DType = 5
	Int32     DType = 6
	Int64     DType = 7
	Bool      DType = 9
	Float16   DType = 10
	Float64   DType = 11
	Uint32    DType = 12
	Uint64    DType = 13
	BFloat16  DType = 16
)

var dtypeNames = map[DType]string{
	Undefined: "undefined",
	Float32:   "float32",
	Uint8:     "uint8",
	Int8:      "int8",
	Uint16:    "uint16",
	Int16:     "int16",
	Int32:     "int32",
	Int64:     "int64",
	8:         "string",
	Bool:      "bool",
	Float16:   "float16",
	Float64:   "float64",
	Uint32:    "uint32",
	Uint64:    "uint64",
	14:        "complex64",
	15:        "complex128",
	BFloat16:  "bfloat16",
	17:        "float8e4m3fn",
	18:        "float8e4m3fnuz",
	19:        "float8e5m2",
	20:        "float8e5m2fnuz",
	21:        "uint4",
	22:        "int4",
	23:        "float4e2m1",
}

// String returns the lower-case name of the type, such as "float32".
func (d DType) String() string {
	if s, ok := dtypeNames[d]; ok {
		return s
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// Size returns the number of bytes of one element, or 0 where the package
// cannot hold tensors of type d.
func (d DType) Size() int {
	switch d {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16, Float16, BFloat16:
		return 2
	case Float32, Int32, Uint32:
		return 4
	case Float64, Int64, Uint64:
		return 8
	}
	return 0
}

// Supported reports whether tensors of type d can be created, fed and
// returned by this package.
func (d DType) Supported() bool { return d.Size() != 0 }

// isHalf reports whether d is a 16-bit float type, stored as []uint16.
func (d DType) isHalf() bool { return d == Float16 || d == BFloat16 }
