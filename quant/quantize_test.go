package quant_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
	"github.com/peftonnx/peftonnx/quant"
)

// TestQuantizeRounding checks round-to-nearest: every element is within
// half a step of its value, except where the symmetric rule clips the
// far side; zero stays zero with a zero point; padding codes are the
// zero point.
func TestQuantizeRounding(t *testing.T) {
	for _, test := range []struct {
		bits, block, k, n int
		symmetric         bool
		scaleType         dtype.Type
	}{
		{4, 32, 128, 8, true, dtype.Float32},
		{4, 32, 100, 8, false, dtype.Float32},
		{4, 16, 40, 5, false, dtype.Float16},
		{4, 64, 64, 3, true, dtype.BFloat16},
		{2, 16, 48, 4, false, dtype.Float32},
		{8, 128, 200, 4, true, dtype.Float32},
	} {
		values := normals(test.k*test.n, 0.1, uint64(test.k*test.bits))
		values[3*test.n] = 0 // a zero inside a block
		w, err := quant.Quantize(values, test.k, test.n, quant.Options{Bits: test.bits, BlockSize: test.block, Symmetric: test.symmetric, ScaleType: test.scaleType})
		if err != nil {
			t.Fatal(err)
		}
		if w.Symmetric() != test.symmetric {
			t.Errorf("%+v: Symmetric() = %v", test, w.Symmetric())
		}
		deq, err := w.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		kb := w.KBlocks()
		mid := float64(w.DefaultZeroPoint())
		for k := range test.k {
			for n := range test.n {
				s := float64(w.Scales[n*kb+k/test.block])
				v, d := float64(values[k*test.n+n]), float64(deq[k*test.n+n])
				tol := math.Abs(s)/2*(1+1e-5) + 1e-12
				if test.symmetric && v/s > mid-1 { // beyond the last code
					tol = math.Abs(v) - (mid-1)*math.Abs(s) + tol
				}
				if math.Abs(v-d) > tol {
					t.Errorf("%+v: element [%d, %d] = %g dequantizes to %g, more than %g away", test, k, n, v, d, tol)
				}
			}
		}
		if got := deq[3*test.n]; got != 0 {
			t.Errorf("%+v: zero dequantizes to %g, want 0", test, got)
		}
		for i, s := range w.Scales {
			if r := roundTo(test.scaleType, s); r != s {
				t.Errorf("%+v: scale %d is %g, not a %s value (%g)", test, i, s, test.scaleType, r)
				break
			}
		}
		// Rows past K pad the last block with its zero point.
		codes := w.Codes()
		for n := range test.n {
			for k := test.k; k < w.PaddedK(); k++ {
				z := w.DefaultZeroPoint()
				if !test.symmetric {
					z = zeroPoint(w, n, kb-1)
				}
				if got := int(codes[n*w.PaddedK()+k]); got != z {
					t.Fatalf("%+v: padding code [%d, %d] is %d, want the zero point %d", test, n, k, got, z)
				}
			}
		}
	}
}

// TestQuantizeSymmetricExtreme checks ONNX Runtime's symmetric rule: the
// element of largest magnitude is code 0 and comes back exactly, and
// the scale has the opposite sign.
func TestQuantizeSymmetricExtreme(t *testing.T) {
	values := make([]float32, 32)
	for i := range values {
		values[i] = float32(i%5) * 0.1
	}
	values[7] = 0.8 // the extreme, positive
	w, err := quant.Quantize(values, 32, 1, quant.Options{Bits: 4, BlockSize: 32, Symmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := float32(0.8) / -8; w.Scales[0] != want {
		t.Errorf("got scale %g, want 0.8/-8 = %g", w.Scales[0], want)
	}
	if c := w.Codes()[7]; c != 0 {
		t.Errorf("the extreme has code %d, want 0", c)
	}
	deq, _ := w.Dequantize()
	if deq[7] != 0.8 {
		t.Errorf("the extreme dequantizes to %g, want 0.8", deq[7])
	}
}

func TestQuantizeZeroBlock(t *testing.T) {
	for _, sym := range []bool{true, false} {
		w, err := quant.Quantize(make([]float32, 16*2), 16, 2, quant.Options{Bits: 4, BlockSize: 16, Symmetric: sym})
		if err != nil {
			t.Fatal(err)
		}
		deq, _ := w.Dequantize()
		if slices.ContainsFunc(deq, func(v float32) bool { return v != 0 }) || w.Scales[0] != 0 {
			t.Errorf("symmetric=%v: zeros give scales %v and values %v, want zeros", sym, w.Scales, deq)
		}
	}
}

func TestDequantizeBlocks(t *testing.T) {
	const k, n = 100, 7
	w, err := quant.Quantize(normals(k*n, 1, 5), k, n, quant.Options{Bits: 4, BlockSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	all, err := w.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int{{0, 1}, {2, 3}, {6, 1}, {0, 7}, {3, 0}} {
		got, err := w.DequantizeBlocks(r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := r[0]*16, min((r[0]+r[1])*16, k)
		if want := all[lo*n : hi*n]; !slices.Equal(got, want) {
			t.Errorf("blocks %d+%d: got %d values that differ from rows %d to %d of Dequantize", r[0], r[1], len(got), lo, hi)
		}
	}
	if _, err := w.DequantizeBlocks(5, 3); err == nil || !strings.Contains(err.Error(), "blocks 0 to 6") {
		t.Errorf("blocks past the end: got %v, want an error naming the weight's blocks", err)
	}
}

// TestRequantize checks that requantizing keeps the weight's form and
// equals quantizing afresh with the same options.
func TestRequantize(t *testing.T) {
	const k, n = 72, 6
	old := normals(k*n, 1, 8)
	values := normals(k*n, 2, 9)
	for _, o := range []quant.Options{
		{Bits: 4, BlockSize: 32},
		{Bits: 4, BlockSize: 16, Symmetric: true, ScaleType: dtype.Float16},
		{Bits: 8, BlockSize: 64},
	} {
		w, err := quant.Quantize(old, k, n, o)
		if err != nil {
			t.Fatal(err)
		}
		before := slices.Clone(w.B)
		got, err := w.Requantize(values)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := quant.Quantize(values, k, n, o)
		if got.Layout != w.Layout || got.ScaleType != w.ScaleType || got.Symmetric() != w.Symmetric() {
			t.Errorf("%+v: requantized into %+v (%s), want the old layout %+v (%s)", o, got.Layout, got.ScaleType, w.Layout, w.ScaleType)
		}
		if !slices.Equal(got.B, want.B) || !slices.Equal(got.Scales, want.Scales) || !slices.Equal(got.ZeroPoints, want.ZeroPoints) {
			t.Errorf("%+v: Requantize differs from Quantize with the same options", o)
		}
		if !slices.Equal(w.B, before) {
			t.Errorf("%+v: Requantize changed the old weight", o)
		}
	}
	// Float zero points stay float zero points.
	w, _ := quant.Quantize(old, k, n, quant.Options{})
	w.FloatZeroPoints = make([]float32, len(w.Scales))
	w.ZeroPoints = nil
	got, err := w.Requantize(values)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := quant.Quantize(values, k, n, quant.Options{})
	if got.FloatZeroPoints == nil || got.ZeroPoints != nil {
		t.Fatalf("float zero points requantized into packed ones")
	}
	for j, z := range got.FloatZeroPoints {
		if int(z) != zeroPoint(want, j/w.KBlocks(), j%w.KBlocks()) {
			t.Fatalf("float zero point %d is %g, want %d", j, z, zeroPoint(want, j/w.KBlocks(), j%w.KBlocks()))
		}
	}
}

func TestQuantizeErrors(t *testing.T) {
	nan := normals(32, 1, 1)
	nan[33%32] = float32(math.NaN())
	for _, test := range []struct {
		reason string
		values []float32
		k, n   int
		o      quant.Options
		want   string
	}{
		{"3 bits", make([]float32, 32), 32, 1, quant.Options{Bits: 3}, "3 bits: MatMulNBits packs 2, 4 or 8 bits"},
		{"block size 8", make([]float32, 32), 32, 1, quant.Options{BlockSize: 8}, "block size 8: want a power of two of at least 16"},
		{"block size 48", make([]float32, 96), 96, 1, quant.Options{BlockSize: 48}, "block size 48"},
		{"no rows", nil, 0, 4, quant.Options{}, "K and N must be positive"},
		{"wrong count", make([]float32, 31), 32, 1, quant.Options{}, "31 values for a 32×1 weight"},
		{"NaN", nan, 32, 1, quant.Options{}, "weight element [1, 0] is NaN"},
		{"int8 scales", make([]float32, 32), 32, 1, quant.Options{ScaleType: dtype.Int8}, "scales of type int8"},
	} {
		_, err := quant.Quantize(test.values, test.k, test.n, test.o)
		if err == nil || !strings.HasPrefix(err.Error(), "quant: ") || !strings.Contains(err.Error(), test.want) {
			t.Errorf("%s: got %v, want an error containing %q", test.reason, err, test.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() *quant.Weight {
		w, err := quant.Quantize(normals(64*3, 1, 3), 64, 3, quant.Options{BlockSize: 32})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	for _, test := range []struct {
		reason string
		edit   func(w *quant.Weight)
		want   string
	}{
		{"short B", func(w *quant.Weight) { w.B = w.B[1:] }, "B has 95 bytes, want 96"},
		{"short scales", func(w *quant.Weight) { w.Scales = w.Scales[1:] }, "5 scales, want 6"},
		{"short zero points", func(w *quant.Weight) { w.ZeroPoints = w.ZeroPoints[1:] }, "2 bytes of zero points, want 3"},
		{"both zero points", func(w *quant.Weight) { w.FloatZeroPoints = make([]float32, 6) }, "both packed and float zero points"},
		{"g_idx out of range", func(w *quant.Weight) { w.ZeroPoints = nil; w.GIdx = make([]int32, 64); w.GIdx[5] = 2 }, "g_idx[5] is 2, outside [0, 2)"},
		{"g_idx length", func(w *quant.Weight) { w.ZeroPoints = nil; w.GIdx = make([]int32, 10) }, "g_idx has 10 entries"},
		{"scale type", func(w *quant.Weight) { w.ScaleType = dtype.Float64 }, "scales of type float64"},
	} {
		w := good()
		test.edit(w)
		err := w.Validate()
		if err == nil || !strings.Contains(err.Error(), test.want) {
			t.Errorf("%s: got %v, want an error containing %q", test.reason, err, test.want)
		}
		if _, err := w.Dequantize(); err == nil {
			t.Errorf("%s: Dequantize accepted the weight", test.reason)
		}
	}
}

// zeroPoint reads the packed zero point of block j of column n.
func zeroPoint(w *quant.Weight, n, j int) int {
	z := make([]uint8, len(w.ZeroPoints)*8/w.Bits)
	quant.UnpackCodes(z, w.ZeroPoints, w.Bits)
	return int(z[n*w.ZeroPointRowSize()*8/w.Bits+j])
}

// roundTo rounds v to element type dt.
func roundTo(dt dtype.Type, v float32) float32 {
	switch dt {
	case dtype.Float16:
		return half.Float16ToFloat32(half.Float32ToFloat16(v))
	case dtype.BFloat16:
		return half.BFloat16ToFloat32(half.Float32ToBFloat16(v))
	}
	return v
}
