package adapter

import (
	"fmt"
	"strings"
)

// DType is the element type a tensor is stored with in a file. In memory a
// Tensor always holds float32; DType says what to write it as and what it
// was read from. The zero value is Float32.
type DType uint8

// The element types that adapter files carry.
const (
	Float32 DType = iota
	Float16
	BFloat16
	Float64
	Int64
	Int32
	Int8
	Uint8
)

var dtypeInfo = [...]struct {
	name        string // config spelling, as PaddleNLP and torch write it
	safetensors string // safetensors header spelling
	onnx        int32  // ONNX TensorProto.DataType
	size        int    // bytes per element
}{
	Float32:  {"float32", "F32", 1, 4},
	Float16:  {"float16", "F16", 10, 2},
	BFloat16: {"bfloat16", "BF16", 16, 2},
	Float64:  {"float64", "F64", 11, 8},
	Int64:    {"int64", "I64", 7, 8},
	Int32:    {"int32", "I32", 6, 4},
	Int8:     {"int8", "I8", 3, 1},
	Uint8:    {"uint8", "U8", 2, 1},
}

func (d DType) valid() bool { return int(d) < len(dtypeInfo) }

// String returns the config spelling of d: "float32", "float16", "bfloat16", ….
func (d DType) String() string {
	if !d.valid() {
		return fmt.Sprintf("DType(%d)", uint8(d))
	}
	return dtypeInfo[d].name
}

// Size returns the number of bytes one element of d takes in a file.
func (d DType) Size() int {
	if !d.valid() {
		return 0
	}
	return dtypeInfo[d].size
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	return d == Float32 || d == Float16 || d == BFloat16 || d == Float64
}

// MarshalText writes the config spelling of d.
func (d DType) MarshalText() ([]byte, error) {
	if !d.valid() {
		return nil, errorf("unknown dtype %d", uint8(d))
	}
	return []byte(d.String()), nil
}

// UnmarshalText reads a config spelling; the empty string means float32.
func (d *DType) UnmarshalText(b []byte) error {
	v, err := ParseDType(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDType parses a dtype as configs spell it: "float32", "float16",
// "bfloat16", "float64", "int64", "int32", "int8", "uint8". The empty string
// means float32; "fp16", "bf16" and "fp32" are accepted too.
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "", "fp32":
		return Float32, nil
	case "fp16", "half":
		return Float16, nil
	case "bf16":
		return BFloat16, nil
	}
	for d, info := range dtypeInfo {
		if strings.EqualFold(s, info.name) {
			return DType(d), nil
		}
	}
	return 0, errorf("unknown dtype %q", s)
}

// safetensorsDType parses a safetensors header dtype.
func safetensorsDType(s string) (DType, bool) {
	for d, info := range dtypeInfo {
		if s == info.safetensors {
			return DType(d), true
		}
	}
	return 0, false
}

// onnxDType maps an ONNX TensorProto.DataType to a DType.
func onnxDType(t int32) (DType, bool) {
	for d, info := range dtypeInfo {
		if t == info.onnx {
			return DType(d), true
		}
	}
	return 0, false
}
