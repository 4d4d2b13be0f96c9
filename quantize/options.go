package quantize

import (
	"cmp"

	"github.com/peftonnx/peftonnx/quant"
)

// Options says which linear layers Model quantizes and how.
type Options struct {
	// Bits is the width of a code: 2, 4 or 8. Zero means 4.
	Bits int
	// BlockSize is the number of input features that share a scale: a
	// power of two of at least 16. Zero means 32.
	BlockSize int
	// Symmetric stores no zero points (every block has 2^(Bits−1));
	// otherwise each block gets a zero point from its minimum and maximum.
	Symmetric bool
	// AccuracyLevel is MatMulNBits' accuracy_level, 0 to 4: 0 leaves it
	// unset, 4 lets ONNX Runtime quantize the activations to int8.
	AccuracyLevel int
	// Targets are regular expressions that must match the whole of a
	// layer's module name or node name, as rewrite.MatchTargets takes
	// them. None means every linear layer.
	Targets []string
	// Embeddings also quantizes the embeddings, to GatherBlockQuantized
	// (see Model); they are left in float otherwise.
	Embeddings bool
	// Seed makes the random input on which Report.OutputRelError is
	// measured.
	Seed uint64
}

// withDefaults fills the zero fields of o.
func (o Options) withDefaults() Options {
	o.Bits = cmp.Or(o.Bits, 4)
	o.BlockSize = cmp.Or(o.BlockSize, 32)
	return o
}

// check reports the first option out of range.
func (o Options) check() error {
	if !quant.SupportedBits(o.Bits) {
		return errorf("%d bits: MatMulNBits takes 2, 4 or 8", o.Bits)
	}
	if !quant.ValidBlockSize(o.BlockSize) {
		return errorf("block size %d: MatMulNBits wants a power of two of at least 16", o.BlockSize)
	}
	if o.AccuracyLevel < 0 || o.AccuracyLevel > quant.MaxAccuracyLevel {
		return errorf("accuracy level %d: MatMulNBits takes 0 to %d", o.AccuracyLevel, quant.MaxAccuracyLevel)
	}
	return nil
}
