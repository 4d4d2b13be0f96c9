package quant

import (
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
)

// Weight is one weight matrix in MatMulNBits' packed form, with the
// quantization parameters of its blocks. Element (k, n) of the K×N matrix
// is stored as a code q in block j = k / BlockSize of column n, and stands
// for (q − zero point) · scale of that block.
type Weight struct {
	Layout
	// B holds the codes, [N, KBlocks, BlobSize] bytes: block j of column n
	// starts at byte (n·KBlocks + j)·BlobSize and packs BlockSize codes,
	// low bits first (see PackCodes). Rows past K in the last block are
	// padding; Quantize fills them with the block's zero point.
	B []byte
	// Scales holds one scale per block, [N, KBlocks] row-major. Scales
	// may be negative (see Quantize).
	Scales []float32
	// ScaleType is the element type of the scales tensor, which
	// MatMulNBits requires to be the type of A and Y: dtype.Float32,
	// dtype.Float16 or dtype.BFloat16. Scales holds values that this type
	// represents exactly.
	ScaleType dtype.Type
	// ZeroPoints holds packed zero points, [N, ZeroPointRowSize] bytes,
	// block j of column n at bit j·Bits of the column's bytes, low bits
	// first. Nil means that no zero point is stored: every block has
	// DefaultZeroPoint, which is what symmetric quantization stores.
	ZeroPoints []byte
	// FloatZeroPoints holds unpacked zero points of ScaleType, [N, KBlocks],
	// the other form that MatMulNBits reads. At most one of ZeroPoints and
	// FloatZeroPoints is set.
	FloatZeroPoints []float32
	// GIdx maps row k of the weight to the block whose scale and zero
	// point it uses (the deprecated g_idx input), with K or PaddedK
	// entries in [0, KBlocks). Nil means row k uses block k / BlockSize.
	// The code of row k stays at its own place in B. A weight with GIdx
	// has no packed zero points (see Validate).
	GIdx []int32
}

// Symmetric reports whether w stores no zero points, so that every block
// has the default zero point.
func (w *Weight) Symmetric() bool { return w.ZeroPoints == nil && w.FloatZeroPoints == nil }

// Validate checks that w's slices have the sizes its layout asks for and
// that its scale type and g_idx values are ones MatMulNBits takes. It
// refuses g_idx together with packed zero points: ONNX Runtime 1.24's CPU
// kernel then ignores the zero points (it dequantizes with the default
// one), against its own spec.
func (w *Weight) Validate() error {
	if err := w.check(); err != nil {
		return errorf("%w", err)
	}
	return nil
}

// check is Validate without the package prefix.
func (w *Weight) check() error {
	if err := w.Layout.check(); err != nil {
		return err
	}
	nb := w.N * w.KBlocks()
	if got, want := len(w.B), nb*w.BlobSize(); got != want {
		return fmt.Errorf("packed weight B has %d bytes, want %d for %v", got, want, w.BShape())
	}
	if len(w.Scales) != nb {
		return fmt.Errorf("%d scales, want %d for %v", len(w.Scales), nb, w.ScalesShape())
	}
	if !isScaleType(w.ScaleType) {
		return fmt.Errorf("scales of type %s: MatMulNBits takes float32, float16 or bfloat16", w.ScaleType)
	}
	if w.ZeroPoints != nil && w.FloatZeroPoints != nil {
		return fmt.Errorf("both packed and float zero points are set")
	}
	if w.ZeroPoints != nil {
		if got, want := len(w.ZeroPoints), w.N*w.ZeroPointRowSize(); got != want {
			return fmt.Errorf("%d bytes of zero points, want %d for %v", got, want, w.ZeroPointsShape())
		}
	}
	if w.FloatZeroPoints != nil && len(w.FloatZeroPoints) != nb {
		return fmt.Errorf("%d float zero points, want %d for %v", len(w.FloatZeroPoints), nb, w.ScalesShape())
	}
	if w.GIdx != nil {
		if w.ZeroPoints != nil {
			return fmt.Errorf("g_idx with packed zero points is not supported: ONNX Runtime 1.24's CPU kernel ignores packed zero points when g_idx is given and dequantizes with %d, so the weight has no one meaning", w.DefaultZeroPoint())
		}
		if len(w.GIdx) != w.K && len(w.GIdx) != w.PaddedK() {
			return fmt.Errorf("g_idx has %d entries, want K=%d or %d", len(w.GIdx), w.K, w.PaddedK())
		}
		for i, g := range w.GIdx {
			if g < 0 || int(g) >= w.KBlocks() {
				return fmt.Errorf("g_idx[%d] is %d, outside [0, %d)", i, g, w.KBlocks())
			}
		}
	}
	return nil
}

// isScaleType reports whether dt is a type that MatMulNBits' A, Y and
// scales may have.
func isScaleType(dt dtype.Type) bool {
	return dt == dtype.Float32 || dt == dtype.Float16 || dt == dtype.BFloat16
}

// zeroPoint returns the zero point of block j of column n.
func (w *Weight) zeroPoint(n, j int) float32 {
	switch {
	case w.FloatZeroPoints != nil:
		return w.FloatZeroPoints[n*w.KBlocks()+j]
	case w.ZeroPoints != nil:
		bit := j * w.Bits
		b := w.ZeroPoints[n*w.ZeroPointRowSize()+bit/8]
		return float32((b >> (bit % 8)) & uint8(w.MaxCode()))
	}
	return float32(w.DefaultZeroPoint())
}

// Codes returns the unpacked codes of w as [N, PaddedK] bytes, padding
// included.
func (w *Weight) Codes() []uint8 {
	codes := make([]uint8, w.N*w.PaddedK())
	UnpackCodes(codes, w.B, w.Bits)
	return codes
}
