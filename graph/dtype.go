package graph

import "github.com/peftonnx/peftonnx/graph/onnxpb"

// Element types, as ONNX numbers them (TensorProto.DataType).
const (
	Float32  = int32(onnxpb.TensorProto_FLOAT)
	Uint8    = int32(onnxpb.TensorProto_UINT8)
	Int8     = int32(onnxpb.TensorProto_INT8)
	Int32    = int32(onnxpb.TensorProto_INT32)
	Int64    = int32(onnxpb.TensorProto_INT64)
	Bool     = int32(onnxpb.TensorProto_BOOL)
	Float16  = int32(onnxpb.TensorProto_FLOAT16)
	Float64  = int32(onnxpb.TensorProto_DOUBLE)
	BFloat16 = int32(onnxpb.TensorProto_BFLOAT16)
)

// ElemSize returns the size in bytes of one element of type dt, or 0 for
// types without a fixed byte size (string, 4-bit types).
func ElemSize(dt int32) int {
	switch onnxpb.TensorProto_DataType(dt) {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_INT32, onnxpb.TensorProto_UINT32:
		return 4
	case onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_INT64, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_COMPLEX64:
		return 8
	case onnxpb.TensorProto_COMPLEX128:
		return 16
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16:
		return 2
	case onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL,
		onnxpb.TensorProto_FLOAT8E4M3FN, onnxpb.TensorProto_FLOAT8E4M3FNUZ, onnxpb.TensorProto_FLOAT8E5M2, onnxpb.TensorProto_FLOAT8E5M2FNUZ:
		return 1
	}
	return 0
}

// DTypeName returns the ONNX name of an element type, such as "float16".
func DTypeName(dt int32) string {
	switch dt {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	case Float64:
		return "float64"
	case Int64:
		return "int64"
	case Int32:
		return "int32"
	case Int8:
		return "int8"
	case Uint8:
		return "uint8"
	case Bool:
		return "bool"
	}
	if n, ok := onnxpb.TensorProto_DataType_name[dt]; ok {
		return n
	}
	return "unknown"
}

// IsFloat reports whether dt is a floating-point element type.
func IsFloat(dt int32) bool {
	return dt == Float32 || dt == Float16 || dt == BFloat16 || dt == Float64
}
