package dtype

import "testing"

func TestDescr(t *testing.T) {
	tests := []struct {
		t     Type
		descr string
	}{
		{Bool, "|b1"}, {Int8, "|i1"}, {Uint8, "|u1"},
		{Int16, "<i2"}, {Uint16, "<u2"}, {Int32, "<i4"}, {Uint32, "<u4"},
		{Int64, "<i8"}, {Uint64, "<u8"},
		{Float16, "<f2"}, {Float32, "<f4"}, {Float64, "<f8"},
		{Complex64, "<c8"}, {Complex128, "<c16"},
	}
	for _, tc := range tests {
		if got := tc.t.Descr(); got != tc.descr {
			t.Errorf("%s.Descr() = %q, want %q", tc.t, got, tc.descr)
		}
		if got, ok := ParseDescr(tc.descr); !ok || got != tc.t {
			t.Errorf("ParseDescr(%q) = %s, %v; want %s", tc.descr, got, ok, tc.t)
		}
	}
	for _, tt := range []Type{Undefined, String, BFloat16, Float8E4M3FN, Int4, Type(99)} {
		if got := tt.Descr(); got != "" {
			t.Errorf("%s.Descr() = %q, want none", tt, got)
		}
	}
}

func TestParseDescr(t *testing.T) {
	tests := []struct {
		descr string
		want  Type
		ok    bool
		big   bool // BigEndian recognizes it
	}{
		{"<f4", Float32, true, false},
		{"|u1", Uint8, true, false},
		{"<u1", Uint8, true, false},
		{">i1", Int8, true, false},
		{"=b1", Bool, true, false},
		{">f4", Float32, false, true},
		{">i8", Int64, false, true},
		{"|f4", Undefined, false, false},
		{"=f4", Undefined, false, false},
		{"<V8", Undefined, false, false},
		{"<f", Undefined, false, false},
		{"f", Undefined, false, false},
		{"", Undefined, false, false},
	}
	for _, tc := range tests {
		got, ok := ParseDescr(tc.descr)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ParseDescr(%q) = %s, %v; want %s, %v", tc.descr, got, ok, tc.want, tc.ok)
		}
		got, big := BigEndian(tc.descr)
		if big != tc.big || (big && got != tc.want) {
			t.Errorf("BigEndian(%q) = %s, %v; want %s, %v", tc.descr, got, big, tc.want, tc.big)
		}
	}
}
