package quant

import (
	"cmp"
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
)

// Options says how Quantize stores a weight.
type Options struct {
	// Bits is the width of a code: 2, 4 or 8. Zero means 4.
	Bits int
	// BlockSize is the number of rows along K that share a scale: a power
	// of two of at least 16. Zero means 32.
	BlockSize int
	// Symmetric stores no zero points: every block has the default zero
	// point 2^(Bits−1). Otherwise each block gets its own zero point from
	// its minimum and maximum.
	Symmetric bool
	// ScaleType is the element type of the scales, which MatMulNBits
	// requires to be the type of its input A: dtype.Float32 (also Undefined),
	// dtype.Float16 or dtype.BFloat16.
	ScaleType dtype.Type
}

// withDefaults fills the zero fields of o.
func (o Options) withDefaults() Options {
	o.Bits = cmp.Or(o.Bits, 4)
	o.BlockSize = cmp.Or(o.BlockSize, 32)
	o.ScaleType = o.ScaleType.Or(dtype.Float32)
	return o
}

// Quantize rounds the K×N matrix values (row-major, as a MatMul's B input
// holds it) to nearest, block by block along K, into MatMulNBits' layout.
//
// Symmetric: the element of largest magnitude m in a block sets the
// scale s = m / −2^(Bits−1), so that m is stored as code 0 and the block's
// range [−|m|, |m|] covers the codes 0 … 2^Bits − 1 around the default zero
// point z = 2^(Bits−1); s is negative where m is positive. This is the rule
// of ONNX Runtime's own quantizer, which keeps the one extreme exact and
// clips the other side at (2^(Bits−1) − 1)·|s|.
//
// Asymmetric: with lo = min(min of the block, 0) and hi = max(max of the
// block, 0), s = (hi − lo) / (2^Bits − 1) and z = round(−lo / s), clamped
// to the codes.
//
// Either way the scale is first rounded to ScaleType, and each element v
// is stored as clamp(round(v / s) + z) with round-half-to-even; a block of
// zeros gets scale 0 and the default zero point. Rows that pad the last
// block are stored as z, so they dequantize to 0. Values must be finite.
func Quantize(values []float32, k, n int, o Options) (*Weight, error) {
	o = o.withDefaults()
	l := Layout{K: k, N: n, Bits: o.Bits, BlockSize: o.BlockSize}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if !isScaleType(o.ScaleType) {
		return nil, errorf("scales of type %s: MatMulNBits takes float32, float16 or bfloat16", o.ScaleType)
	}
	w := &Weight{Layout: l, ScaleType: o.ScaleType}
	if !o.Symmetric {
		w.ZeroPoints = make([]byte, n*l.ZeroPointRowSize())
	}
	if err := w.fill(values); err != nil {
		return nil, err
	}
	return w, nil
}

// Requantize rounds the K×N matrix values into w's layout and form: the
// same bits, block size and scale type, symmetric where w is, with packed
// or float zero points where w has them. It returns a new Weight and
// leaves w as it is. A weight with g_idx cannot be requantized: its rows
// are not grouped in blocks by position.
func (w *Weight) Requantize(values []float32) (*Weight, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if w.GIdx != nil {
		return nil, errorf("weight of %d×%d has g_idx: requantizing it is not supported", w.K, w.N)
	}
	out := &Weight{Layout: w.Layout, ScaleType: w.ScaleType}
	switch {
	case w.ZeroPoints != nil:
		out.ZeroPoints = make([]byte, w.N*w.ZeroPointRowSize())
	case w.FloatZeroPoints != nil:
		out.FloatZeroPoints = make([]float32, w.N*w.KBlocks())
	}
	if err := out.fill(values); err != nil {
		return nil, err
	}
	return out, nil
}

// fill quantizes values into w, whose layout, scale type and zero-point
// storage are set; it allocates B and Scales.
func (w *Weight) fill(values []float32) error {
	if len(values) != w.K*w.N {
		return errorf("%d values for a %d×%d weight", len(values), w.K, w.N)
	}
	for i, v := range values {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return errorf("weight element [%d, %d] is %v: only finite values can be quantized", i/w.N, i%w.N, v)
		}
	}
	kb, blob, bs := w.KBlocks(), w.BlobSize(), w.BlockSize
	w.B = make([]byte, w.N*kb*blob)
	w.Scales = make([]float32, w.N*kb)
	// Columns are independent, and each writes its own bytes of B,
	// Scales and the zero points (whose rows start on a byte).
	parallelFor(w.N, func(lo, hi int) {
		block := make([]float32, bs)
		codes := make([]uint8, bs)
		for n := lo; n < hi; n++ {
			for j := range kb {
				rows := min(bs, w.K-j*bs)
				for r := range rows {
					block[r] = values[(j*bs+r)*w.N+n]
				}
				s, z := w.blockParams(block[:rows])
				for r := range bs {
					q := z
					if r < rows && s != 0 {
						q += math.RoundToEven(float64(block[r]) / float64(s))
					}
					codes[r] = uint8(min(max(q, 0), float64(w.MaxCode())))
				}
				off := (n*kb + j) * blob
				PackCodes(w.B[off:off+blob], codes, w.Bits)
				w.Scales[n*kb+j] = s
				w.setZeroPoint(n, j, z)
			}
		}
	})
	return nil
}

// blockParams returns the scale, already rounded to w's scale type, and
// the zero point of one block of values.
func (w *Weight) blockParams(v []float32) (scale float32, zp float64) {
	maxq := float64(w.MaxCode())
	if w.Symmetric() {
		var m float32
		for _, x := range v {
			if abs32(x) > abs32(m) {
				m = x
			}
		}
		mid := w.DefaultZeroPoint()
		s := half.RoundTo(w.ScaleType, m/-float32(mid))
		return s, float64(mid)
	}
	lo, hi := float32(0), float32(0)
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	s := half.RoundTo(w.ScaleType, float32((float64(hi)-float64(lo))/maxq))
	if s == 0 {
		return 0, float64(w.DefaultZeroPoint())
	}
	z := math.RoundToEven(-float64(lo) / float64(s))
	return s, min(max(z, 0), maxq)
}

// setZeroPoint stores z as the zero point of block j of column n, where w
// stores zero points.
func (w *Weight) setZeroPoint(n, j int, z float64) {
	switch {
	case w.FloatZeroPoints != nil:
		w.FloatZeroPoints[n*w.KBlocks()+j] = float32(z)
	case w.ZeroPoints != nil:
		bit := j * w.Bits
		i := n*w.ZeroPointRowSize() + bit/8
		shift := bit % 8
		mask := uint8(w.MaxCode()) << shift
		w.ZeroPoints[i] = w.ZeroPoints[i]&^mask | uint8(z)<<shift
	}
}
func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }
