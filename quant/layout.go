package quant

import "fmt"

// Layout is the shape of one MatMulNBits weight: a K×N matrix (K input
// features, N output features) cut along K into blocks of BlockSize rows,
// each element stored in Bits bits.
type Layout struct {
	K, N      int
	Bits      int
	BlockSize int
}

// SupportedBits reports whether bits is a width this package packs and
// ONNX Runtime 1.24's CPU kernel runs: 2, 4 or 8.
func SupportedBits(bits int) bool {
	return bits == 2 || bits == 4 || bits == 8
}

// Validate checks that l is a layout ONNX Runtime accepts: K and N
// positive, Bits 2, 4 or 8, and BlockSize a power of two of at least 16.
func (l Layout) Validate() error {
	if err := l.check(); err != nil {
		return errorf("%w", err)
	}
	return nil
}

// check is Validate without the package prefix.
func (l Layout) check() error {
	if l.K <= 0 || l.N <= 0 {
		return fmt.Errorf("weight of %d×%d: K and N must be positive", l.K, l.N)
	}
	if !SupportedBits(l.Bits) {
		return fmt.Errorf("%d bits: MatMulNBits packs 2, 4 or 8 bits", l.Bits)
	}
	if !ValidBlockSize(l.BlockSize) {
		return fmt.Errorf("block size %d: want a power of two of at least 16", l.BlockSize)
	}
	return nil
}

// ValidBlockSize reports whether b is a power of two of at least 16, the
// block sizes that MatMulNBits accepts.
func ValidBlockSize(b int) bool {
	return b >= 16 && b&(b-1) == 0
}

// KBlocks is the number of blocks along K, ceil(K / BlockSize). The last
// block is padded when K is not a multiple of BlockSize.
func (l Layout) KBlocks() int { return (l.K + l.BlockSize - 1) / l.BlockSize }

// BlobSize is the number of bytes of one packed block, BlockSize·Bits/8.
func (l Layout) BlobSize() int { return l.BlockSize * l.Bits / 8 }

// PaddedK is the number of rows the blocks hold, KBlocks·BlockSize.
func (l Layout) PaddedK() int { return l.KBlocks() * l.BlockSize }

// ZeroPointRowSize is the number of bytes of packed zero points per output
// column, ceil(KBlocks·Bits/8): each column's zero points start on a byte.
func (l Layout) ZeroPointRowSize() int { return (l.KBlocks()*l.Bits + 7) / 8 }

// MaxCode is the largest stored value, 2^Bits − 1.
func (l Layout) MaxCode() int { return 1<<l.Bits - 1 }

// DefaultZeroPoint is the zero point that MatMulNBits assumes when a node
// has no zero_points input: 2^(Bits−1), 8 for 4 bits.
func (l Layout) DefaultZeroPoint() int { return 1 << (l.Bits - 1) }

// BShape is the shape of the packed B input: [N, KBlocks, BlobSize].
func (l Layout) BShape() []int64 {
	return []int64{int64(l.N), int64(l.KBlocks()), int64(l.BlobSize())}
}

// ScalesShape is the shape of the scales input: [N, KBlocks].
func (l Layout) ScalesShape() []int64 { return []int64{int64(l.N), int64(l.KBlocks())} }

// ZeroPointsShape is the shape of the packed zero_points input:
// [N, ZeroPointRowSize].
func (l Layout) ZeroPointsShape() []int64 {
	return []int64{int64(l.N), int64(l.ZeroPointRowSize())}
}
