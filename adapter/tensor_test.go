package adapter

import (
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

func TestEncodeDecodeData(t *testing.T) {
	tests := []struct {
		elem  dtype.Type
		in    []float32
		bytes int
	}{
		{dtype.Float32, []float32{0, -1.5, 3.25e-20, float32(math.Inf(-1)), math.MaxFloat32}, 20},
		{dtype.Float16, []float32{0, -1.5, 65504, 6e-8, float32(math.Inf(1))}, 10},
		{dtype.BFloat16, []float32{0, -1.5, 3.3895314e38, 1e-38}, 8},
		{dtype.Float64, []float32{0, -1.5, 1e-30}, 24},
		{dtype.Int64, []float32{0, -1, 1 << 24, -(1 << 24)}, 32},
		{dtype.Int32, []float32{0, -7, 123456}, 12},
		{dtype.Int8, []float32{-128, 0, 127}, 3},
		{dtype.Uint8, []float32{0, 1, 255}, 3},
	}
	for i, test := range tests {
		// Narrow once so that the values are representable, then require
		// the second trip to be bit-identical.
		b, err := encodeData(test.elem, test.in)
		if err != nil {
			t.Fatalf("test %d (%s): %v", i, test.elem, err)
		}
		if len(b) != test.bytes {
			t.Errorf("test %d (%s): got %d bytes want %d", i, test.elem, len(b), test.bytes)
		}
		once, err := decodeData(test.elem, b)
		if err != nil {
			t.Fatalf("test %d (%s): %v", i, test.elem, err)
		}
		b2, _ := encodeData(test.elem, once)
		twice, _ := decodeData(test.elem, b2)
		for j := range once {
			if math.Float32bits(once[j]) != math.Float32bits(twice[j]) {
				t.Errorf("test %d (%s) value %d: got %v want %v", i, test.elem, j, twice[j], once[j])
			}
			if math.Abs(float64(once[j]-test.in[j])) > math.Abs(float64(test.in[j]))*1e-2 && !math.IsInf(float64(test.in[j]), 0) {
				t.Errorf("test %d (%s) value %d: got %v want about %v", i, test.elem, j, once[j], test.in[j])
			}
		}
	}
}

func TestEncodeDataRefusesNonIntegers(t *testing.T) {
	tests := []struct {
		elem dtype.Type
		v    float32
	}{
		{dtype.Int8, 128}, {dtype.Int8, 0.5}, {dtype.Uint8, -1}, {dtype.Int32, float32(math.NaN())}, {dtype.Int64, float32(math.Inf(1))},
	}
	for i, test := range tests {
		if _, err := encodeData(test.elem, []float32{test.v}); err == nil {
			t.Errorf("test %d: %s value %v: got no error", i, test.elem, test.v)
		}
	}
}

func TestDecodeDataRefusesInexactIntegers(t *testing.T) {
	raw := []byte{1, 0, 0, 1, 0, 0, 0, 0} // 2^24 + 1
	if _, err := decodeData(dtype.Int64, raw); err == nil {
		t.Errorf("int64 2^24+1: got no error")
	}
	if _, err := decodeData(dtype.Float32, raw[:3]); err == nil {
		t.Errorf("3 bytes of float32: got no error")
	}
}

func TestTranspose(t *testing.T) {
	x := NewTensor([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	x.DType = dtype.BFloat16
	got := x.Transpose()
	want := []float32{1, 4, 2, 5, 3, 6}
	if !equalShape(got.Shape, []int64{3, 2}) || got.DType != dtype.BFloat16 {
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
		{[]int64{1 << 40, 1 << 40, 0}, 0, false}, // empty, not "too many" (issue 16, E10)
	}
	for i, test := range tests {
		got, err := numElements(test.shape)
		if got != test.want || (err != nil) != test.err {
			t.Errorf("test %d: got %d, %v want %d, error %v", i, got, err, test.want, test.err)
		}
	}
}
