package dtype

import "testing"

func TestSafetensors(t *testing.T) {
	tests := []struct {
		t    Type
		name string
	}{
		{Float64, "F64"}, {Float32, "F32"}, {Float16, "F16"}, {BFloat16, "BF16"},
		{Int64, "I64"}, {Int32, "I32"}, {Int16, "I16"}, {Int8, "I8"},
		{Uint64, "U64"}, {Uint32, "U32"}, {Uint16, "U16"}, {Uint8, "U8"},
		{Bool, "BOOL"}, {Float8E4M3FN, "F8_E4M3"}, {Float8E5M2, "F8_E5M2"},
	}
	for _, tc := range tests {
		if got := tc.t.Safetensors(); got != tc.name {
			t.Errorf("%s.Safetensors() = %q, want %q", tc.t, got, tc.name)
		}
		if got, ok := ParseSafetensors(tc.name); !ok || got != tc.t {
			t.Errorf("ParseSafetensors(%q) = %s, %v; want %s", tc.name, got, ok, tc.t)
		}
	}
	for _, tt := range []Type{Undefined, String, Complex128, Int4, Type(99)} {
		if got := tt.Safetensors(); got != "" {
			t.Errorf("%s.Safetensors() = %q, want none", tt, got)
		}
	}
	for _, s := range []string{"", "f32", "float32", "F8", "C128"} {
		if got, ok := ParseSafetensors(s); ok {
			t.Errorf("ParseSafetensors(%q) = %s, want not ok", s, got)
		}
	}
}
