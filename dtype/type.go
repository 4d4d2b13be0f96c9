package dtype

import "strconv"

// Type is the element type of a tensor. Its values are ONNX's
// TensorProto.DataType numbers. The zero Type is Undefined.
type Type int32

// The element types, with ONNX's numbers.
const (
	Undefined      Type = 0
	Float32        Type = 1
	Uint8          Type = 2
	Int8           Type = 3
	Uint16         Type = 4
	Int16          Type = 5
	Int32          Type = 6
	Int64          Type = 7
	String         Type = 8
	Bool           Type = 9
	Float16        Type = 10
	Float64        Type = 11
	Uint32         Type = 12
	Uint64         Type = 13
	Complex64      Type = 14
	Complex128     Type = 15
	BFloat16       Type = 16
	Float8E4M3FN   Type = 17
	Float8E4M3FNUZ Type = 18
	Float8E5M2     Type = 19
	Float8E5M2FNUZ Type = 20
	Uint4          Type = 21
	Int4           Type = 22
	Float4E2M1     Type = 23
)

// info is what the package knows of one Type.
type info struct {
	name        string // lower-case name, the config spelling
	size        int    // bytes per element; 0 for string and sub-byte types
	safetensors string // safetensors header spelling; "" where it has none
	descr       string // NumPy descriptor, little-endian; "" where it has none
}

var infos = [...]info{
	Undefined:      {"undefined", 0, "", ""},
	Float32:        {"float32", 4, "F32", "<f4"},
	Uint8:          {"uint8", 1, "U8", "|u1"},
	Int8:           {"int8", 1, "I8", "|i1"},
	Uint16:         {"uint16", 2, "U16", "<u2"},
	Int16:          {"int16", 2, "I16", "<i2"},
	Int32:          {"int32", 4, "I32", "<i4"},
	Int64:          {"int64", 8, "I64", "<i8"},
	String:         {"string", 0, "", ""},
	Bool:           {"bool", 1, "BOOL", "|b1"},
	Float16:        {"float16", 2, "F16", "<f2"},
	Float64:        {"float64", 8, "F64", "<f8"},
	Uint32:         {"uint32", 4, "U32", "<u4"},
	Uint64:         {"uint64", 8, "U64", "<u8"},
	Complex64:      {"complex64", 8, "", "<c8"},
	Complex128:     {"complex128", 16, "", "<c16"},
	BFloat16:       {"bfloat16", 2, "BF16", ""},
	Float8E4M3FN:   {"float8e4m3fn", 1, "F8_E4M3", ""},
	Float8E4M3FNUZ: {"float8e4m3fnuz", 1, "", ""},
	Float8E5M2:     {"float8e5m2", 1, "F8_E5M2", ""},
	Float8E5M2FNUZ: {"float8e5m2fnuz", 1, "", ""},
	Uint4:          {"uint4", 0, "", ""},
	Int4:           {"int4", 0, "", ""},
	Float4E2M1:     {"float4e2m1", 0, "", ""},
}

// known reports whether t is one of the types above.
func (t Type) known() bool { return t >= 0 && int(t) < len(infos) }

// String returns the lower-case name of t, such as "float32" or
// "bfloat16", and "dtype(N)" for a number ONNX does not define.
func (t Type) String() string {
	if !t.known() {
		return "dtype(" + strconv.Itoa(int(t)) + ")"
	}
	return infos[t].name
}

// Size returns the number of bytes one element of t takes, or 0 for
// types without a whole-byte size: string, the 4-bit types, Undefined and
// unknown numbers.
func (t Type) Size() int {
	if !t.known() {
		return 0
	}
	return infos[t].size
}

// IsFloat reports whether t is float16, bfloat16, float32 or float64: the
// floating-point types that hold values for arithmetic. The float8 and
// float4 storage formats are not included.
func (t Type) IsFloat() bool {
	switch t {
	case Float16, BFloat16, Float32, Float64:
		return true
	}
	return false
}

// IsInteger reports whether t is a signed or unsigned integer type of 8
// to 64 bits. Bool and the 4-bit types are not included.
func (t Type) IsInteger() bool {
	switch t {
	case Int8, Uint8, Int16, Uint16, Int32, Uint32, Int64, Uint64:
		return true
	}
	return false
}

// Or returns t, or def when t is Undefined. Configs and adapter tensors
// use it to let the zero Type mean their default.
func (t Type) Or(def Type) Type {
	if t == Undefined {
		return def
	}
	return t
}
