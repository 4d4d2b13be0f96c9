package half

import (
	"math"
	"testing"
)

func TestFloat16Known(t *testing.T) {
	tests := []struct {
		f float32
		h uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{0.333251953125, 0x3555},
		{float32(math.Pow(2, -24)), 0x0001}, // smallest subnormal
		{float32(math.Pow(2, -14)), 0x0400}, // smallest normal
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
	}
	for i, tc := range tests {
		if got := Float32ToFloat16(tc.f); got != tc.h {
			t.Errorf("test %d: Float32ToFloat16(%v): got %#04x want %#04x", i, tc.f, got, tc.h)
		}
		if got := Float16ToFloat32(tc.h); got != tc.f {
			t.Errorf("test %d: Float16ToFloat32(%#04x): got %v want %v", i, tc.h, got, tc.f)
		}
	}
}

func TestFloat16Rounding(t *testing.T) {
	// 1 + 2^-11 is exactly halfway between 1 and the next half (1+2^-10): ties to even gives 1.
	if got := Float32ToFloat16(1 + float32(math.Pow(2, -11))); got != 0x3c00 {
		t.Errorf("tie to even: got %#04x want 0x3c00", got)
	}
	// Just above halfway rounds up.
	if got := Float32ToFloat16(1 + float32(math.Pow(2, -11)) + float32(math.Pow(2, -20))); got != 0x3c01 {
		t.Errorf("above tie: got %#04x want 0x3c01", got)
	}
	if got := Float32ToFloat16(70000); got != 0x7c00 {
		t.Errorf("overflow: got %#04x want 0x7c00", got)
	}
	if got := Float16ToFloat32(Float32ToFloat16(float32(math.NaN()))); !math.IsNaN(float64(got)) {
		t.Errorf("NaN round trip: got %v", got)
	}
}

// TestFloat16AllValues checks that every finite half survives widening and narrowing.
func TestFloat16AllValues(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 {
			continue // NaN payloads
		}
		f := Float16ToFloat32(uint16(h))
		if got := Float32ToFloat16(f); got != uint16(h) {
			t.Fatalf("round trip %#04x: got %#04x (via %v)", h, got, f)
		}
	}
}

func TestBFloat16(t *testing.T) {
	tests := []struct {
		f float32
		h uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{3.140625, 0x4049},
		{float32(math.Inf(1)), 0x7f80},
	}
	for i, tc := range tests {
		if got := Float32ToBFloat16(tc.f); got != tc.h {
			t.Errorf("test %d: Float32ToBFloat16(%v): got %#04x want %#04x", i, tc.f, got, tc.h)
		}
		if got := BFloat16ToFloat32(tc.h); got != tc.f {
			t.Errorf("test %d: BFloat16ToFloat32(%#04x): got %v want %v", i, tc.h, got, tc.f)
		}
	}
	// 1 + 2^-8 is halfway between 1 and 1+2^-7: ties to even gives 1.
	if got := Float32ToBFloat16(1 + float32(math.Pow(2, -8))); got != 0x3f80 {
		t.Errorf("tie to even: got %#04x want 0x3f80", got)
	}
	if got := BFloat16ToFloat32(Float32ToBFloat16(float32(math.NaN()))); !math.IsNaN(float64(got)) {
		t.Errorf("NaN round trip: got %v", got)
	}
}
