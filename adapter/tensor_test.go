package adapter

import (
	"math"
	"testing"
)

func TestEncodeDecodeData(t *testing.T) {
	tests := []struct {
		dtype DType
		in    []float32
		bytes int
	}{
		{Float32, []float32{0, -1.5, 3.25e-20, float32(math.Inf(-1)), math.MaxFloat32}, 20},
		{Float16, []float32{0, -1.5, 65504, 6e-8, float32(math.Inf(1))}, 10},
		{BFloat16, []float32{0, -1.5, 3.3895314e38, 1e-38}, 8},
		{Float64, []float32{0, -1.5, 1e-30}, 24},
		{Int64, []float32{0, -1, 1 << 24, -(1 << 24)}, 32},
		{Int32, []float32{0, -7, 123456}, 12},
		{Int8, []float32{-128, 0, 127}, 3},
		{Uint8, []float32{0, 1, 255}, 3},
	}
	for i, test := range tests {
		// Narrow once so that the values are representable, then require
		// the second trip to be bit-identical.
		b, err := encodeData(test.dtype, test.in)
		if err != nil {
			t.Fatalf("test %d (%s): %v", i, test.dtype, err)
		}
		if len(b) != test.bytes {
			t.Errorf("test %d (%s): got %d bytes want %d", i, test.dtype, len(b), test.bytes)
		}
		once, err := decodeData(test.dtype, b)
		if err != nil {
			t.Fatalf("test %d (%s): %v", i, test.dtype, err)
		}
		b2, _ := encodeData(test.dtype, once)
		twice, _ := decodeData(test.dtype, b2)
		for j := range once {
			if math.Float32bits(once[j]) != math.Float32bits(twice[j]) {
				t.Errorf("test %d (%s) value %d: got %v want %v", i, test.dtype, j, twice[j], once[j])
			}
			if math.Abs(float64(once[j]-test.in[j])) > math.Abs(float64(test.in[j]))*1e-2 && !math.IsInf(float64(test.in[j]), 0) {
				t.Errorf("test %d (%s) value %d: got %v want about %v", i, test.dtype, j, once[j], test.in[j])
			}
		}
	}
}

func TestEncodeDataRefusesNonIntegers(t *testing.T) {
	tests := []struct {
		dtype DType
		v     float32
	}{
		{Int8, 128}, {Int8, 0.5}, {Uint8, -1}, {Int32, float32(math.NaN())}, {Int64, float32(math.Inf(1))},
	}
	for i, test := range tests {
		if _, err := encodeData(test.dtype, []float32{test.v}); err == nil {
			t.Errorf("test %d: %s value %v: got no error", i, test.dtype, test.v)
		}
	}
}

func TestDecodeDataRefusesInexactIntegers(t *testing.T) {
	raw := []byte{1, 0, 0, 1, 0, 0, 0, 0} // 2^24 + 1
	if _, err := decodeData(Int64, raw); err == nil {
		t.Errorf("int64 2^24+1: got no error")
	}
	if _, err := decodeData(Float32, raw[:3]); err == nil {
		t.Errorf("3 bytes of float32: got no error")
	}
}

func TestTranspose(t *testing.T) {
	x := NewTensor([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	x.DType = BFloat16
	got := x.Transpose()
	want := []float32{1, 4, 2, 5, 3, 6}
	if !equalShape(got.Shape, []int64{3, 2}) || got.DType != BFloat16 {
		t.Fatalf("got shape %v dtype %s want [3 2] bfloat16", got.Shape, got.DType)
	}
	for i := range want {
		if got.Data[i] != want[i] {
			t.Errorf("value %d: got %v want %v", i, got.Data[i], want[i])
		}
	}
	if back := got.Transpose(); sameTensor(x, back) != nil {
		t.Errorf("transposing twice: %v", sameTensor(x, back))
	}
}

func TestNumElements(t *testing.T) {
	tests := []struct {
		shape []int64
		want  int64
		err   bool
	}{
		{nil, 1, false},
		{[]int64{0, 5}, 0, false},
		{[]int64{3, 4}, 12, false},
		{[]int64{-1}, 0, true},
		{[]int64{1 << 40, 1 << 40}, 0, true},
	}
	for i, test := range tests {
		got, err := numElements(test.shape)
		if got != test.want || (err != nil) != test.err {
			t.Errorf("test %d: got %d, %v want %d, error %v", i, got, err, test.want, test.err)
		}
	}
}

func TestParseDType(t *testing.T) {
	tests := []struct {
		in   string
		want DType
		err  bool
	}{
		{"", Float32, false}, {"float16", Float16, false}, {"BF16", BFloat16, false},
		{"bfloat16", BFloat16, false}, {"int8", Int8, false}, {"float8", 0, true},
	}
	for i, test := range tests {
		got, err := ParseDType(test.in)
		if got != test.want || (err != nil) != test.err {
			t.Errorf("test %d (%q): got %s, %v want %s, error %v", i, test.in, got, err, test.want, test.err)
		}
	}
}
