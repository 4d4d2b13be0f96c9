package dtype

import (
	"encoding/json"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Type
		err  bool
	}{
		{"", Float32, false},
		{"fp32", Float32, false},
		{"float32", Float32, false},
		{"FLOAT32", Float32, false},
		{"fp16", Float16, false},
		{"half", Float16, false},
		{"float16", Float16, false},
		{"bf16", BFloat16, false},
		{"BF16", BFloat16, false},
		{"bfloat16", BFloat16, false},
		{"float64", Float64, false},
		{"int64", Int64, false},
		{"int32", Int32, false},
		{"int16", Int16, false},
		{"int8", Int8, false},
		{"uint8", Uint8, false},
		{"uint16", Uint16, false},
		{"uint32", Uint32, false},
		{"uint64", Uint64, false},
		{"bool", Bool, false},
		{"string", String, false},
		{"complex64", Complex64, false},
		{"complex128", Complex128, false},
		{"float8e4m3fn", Float8E4M3FN, false},
		{"float8e4m3fnuz", Float8E4M3FNUZ, false},
		{"float8e5m2", Float8E5M2, false},
		{"float8e5m2fnuz", Float8E5M2FNUZ, false},
		{"uint4", Uint4, false},
		{"int4", Int4, false},
		{"float4e2m1", Float4E2M1, false},
		{"float8", Undefined, true},
		{"undefined", Undefined, true},
		{"F32", Undefined, true},
		{"dtype(1)", Undefined, true},
	}
	for _, tc := range tests {
		got, err := Parse(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("Parse(%q) = %s, %v; want %s, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestParseString checks that every name String gives parses back.
func TestParseString(t *testing.T) {
	for tt := Float32; tt.known(); tt++ {
		got, err := Parse(tt.String())
		if err != nil || got != tt {
			t.Errorf("Parse(%q) = %s, %v; want %s", tt.String(), got, err, tt)
		}
	}
}

func TestJSON(t *testing.T) {
	type config struct {
		DType Type `json:"dtype"`
	}
	tests := []struct {
		t    Type
		json string
	}{
		{Float32, `{"dtype":"float32"}`},
		{Float16, `{"dtype":"float16"}`},
		{BFloat16, `{"dtype":"bfloat16"}`},
		{Float64, `{"dtype":"float64"}`},
		{Int64, `{"dtype":"int64"}`},
		{Int32, `{"dtype":"int32"}`},
		{Int8, `{"dtype":"int8"}`},
		{Uint8, `{"dtype":"uint8"}`},
		{Bool, `{"dtype":"bool"}`},
	}
	for _, tc := range tests {
		b, err := json.Marshal(config{tc.t})
		if err != nil || string(b) != tc.json {
			t.Errorf("Marshal(%s) = %s, %v; want %s", tc.t, b, err, tc.json)
		}
		var c config
		if err := json.Unmarshal([]byte(tc.json), &c); err != nil || c.DType != tc.t {
			t.Errorf("Unmarshal(%s) = %s, %v; want %s", tc.json, c.DType, err, tc.t)
		}
	}
	for _, in := range []string{`{"dtype":""}`, `{"dtype":"fp32"}`} {
		var c config
		if err := json.Unmarshal([]byte(in), &c); err != nil || c.DType != Float32 {
			t.Errorf("Unmarshal(%s) = %s, %v; want float32", in, c.DType, err)
		}
	}
	for _, bad := range []Type{Undefined, Type(99)} {
		if b, err := json.Marshal(config{bad}); err == nil {
			t.Errorf("Marshal(%s) = %s, want an error", bad, b)
		}
	}
	var c config
	if err := json.Unmarshal([]byte(`{"dtype":"float8"}`), &c); err == nil {
		t.Errorf("Unmarshal of float8 gave %s, want an error", c.DType)
	}
}
