package dtype

import "testing"

func TestTypes(t *testing.T) {
	tests := []struct {
		t       Type
		num     int32
		name    string
		size    int
		isFloat bool
		isInt   bool
	}{
		{Undefined, 0, "undefined", 0, false, false},
		{Float32, 1, "float32", 4, true, false},
		{Uint8, 2, "uint8", 1, false, true},
		{Int8, 3, "int8", 1, false, true},
		{Uint16, 4, "uint16", 2, false, true},
		{Int16, 5, "int16", 2, false, true},
		{Int32, 6, "int32", 4, false, true},
		{Int64, 7, "int64", 8, false, true},
		{String, 8, "string", 0, false, false},
		{Bool, 9, "bool", 1, false, false},
		{Float16, 10, "float16", 2, true, false},
		{Float64, 11, "float64", 8, true, false},
		{Uint32, 12, "uint32", 4, false, true},
		{Uint64, 13, "uint64", 8, false, true},
		{Complex64, 14, "complex64", 8, false, false},
		{Complex128, 15, "complex128", 16, false, false},
		{BFloat16, 16, "bfloat16", 2, true, false},
		{Float8E4M3FN, 17, "float8e4m3fn", 1, false, false},
		{Float8E4M3FNUZ, 18, "float8e4m3fnuz", 1, false, false},
		{Float8E5M2, 19, "float8e5m2", 1, false, false},
		{Float8E5M2FNUZ, 20, "float8e5m2fnuz", 1, false, false},
		{Uint4, 21, "uint4", 0, false, false},
		{Int4, 22, "int4", 0, false, false},
		{Float4E2M1, 23, "float4e2m1", 0, false, false},
		{Type(24), 24, "dtype(24)", 0, false, false},
		{Type(-1), -1, "dtype(-1)", 0, false, false},
	}
	for _, tc := range tests {
		if got := int32(tc.t); got != tc.num {
			t.Errorf("%s: number %d, want %d", tc.name, got, tc.num)
		}
		if got := tc.t.String(); got != tc.name {
			t.Errorf("Type(%d).String() = %q, want %q", tc.num, got, tc.name)
		}
		if got := tc.t.Size(); got != tc.size {
			t.Errorf("%s.Size() = %d, want %d", tc.name, got, tc.size)
		}
		if got := tc.t.IsFloat(); got != tc.isFloat {
			t.Errorf("%s.IsFloat() = %v, want %v", tc.name, got, tc.isFloat)
		}
		if got := tc.t.IsInteger(); got != tc.isInt {
			t.Errorf("%s.IsInteger() = %v, want %v", tc.name, got, tc.isInt)
		}
	}
}

func TestOr(t *testing.T) {
	tests := []struct{ t, def, want Type }{
		{Undefined, Float32, Float32},
		{Float16, Float32, Float16},
		{Int8, BFloat16, Int8},
	}
	for _, tc := range tests {
		if got := tc.t.Or(tc.def); got != tc.want {
			t.Errorf("%s.Or(%s) = %s, want %s", tc.t, tc.def, got, tc.want)
		}
	}
}
