package rewrite

import (
	"fmt"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
)

// Limits bound what one injection may add, so that a mistyped size
// (--r 1e9) is an error before anything is allocated rather than a machine
// out of memory. The defaults are far above any real adapter: a rank-64
// LoRA on every linear layer of a 7B model adds about 0.6 GB. The CLI
// sets them from the environment (README.md, "Limits").
var (
	// MaxRank is the largest LoRA rank.
	MaxRank int64 = 65536
	// MaxPrefixTokens is the most virtual tokens of a prefix.
	MaxPrefixTokens int64 = 65536
	// MaxProjectionHidden is the widest middle layer of a prefix
	// projection.
	MaxProjectionHidden int64 = 1 << 20
	// MaxNewBytes is the most bytes of new tensors that one injection
	// (LoRA factors, or prefix parameters) may add.
	MaxNewBytes int64 = 4 << 30
)

// checkRank reports a rank above MaxRank.
func checkRank(r int64) error {
	if r > MaxRank {
		return errorf("rank %d is above the limit of %d (PEFTONNX_MAX_RANK)", r, MaxRank)
	}
	return nil
}

// newBytes adds the bytes of a tensor of shape dims in dt to *total and
// reports a sum above MaxNewBytes; what names the adapter in the message.
// It never overflows: a size that does not fit is above any limit.
func newBytes(total *int64, dt dtype.Type, what string, dims ...int64) error {
	n := int64(dt.Size())
	for _, d := range dims {
		if d < 0 || (d > 0 && n > (MaxNewBytes+1)/d) {
			return tooManyBytes(what, -1)
		}
		n *= d
	}
	if *total += n; *total > MaxNewBytes {
		return tooManyBytes(what, *total)
	}
	return nil
}

func tooManyBytes(what string, n int64) error {
	size := "more than that"
	if n >= 0 {
		size = fmt.Sprintf("%d bytes", n)
	}
	return errorf("%s would add %s of new tensors, above the limit of %d bytes (PEFTONNX_MAX_NEW_BYTES)", what, size, MaxNewBytes)
}

// checkPrefixLimits checks a completed prefix config against the limits
// before its parameters are allocated.
func checkPrefixLimits(c *adapter.PrefixConfig) error {
	if int64(c.NumPrefixTokens) > MaxPrefixTokens {
		return errorf("prefix config: %d prefix tokens is above the limit of %d (PEFTONNX_MAX_PREFIX_TOKENS)", c.NumPrefixTokens, MaxPrefixTokens)
	}
	if int64(c.PrefixProjectionHiddenSize) > MaxProjectionHidden {
		return errorf("prefix config: projection hidden size %d is above the limit of %d (PEFTONNX_MAX_PROJECTION_HIDDEN)", c.PrefixProjectionHiddenSize, MaxProjectionHidden)
	}
	P, h, w := int64(c.NumPrefixTokens), int64(c.HiddenSize), int64(c.TableWidth())
	what := fmt.Sprintf("a prefix of %d tokens", c.NumPrefixTokens)
	var total int64
	if err := newBytes(&total, dtype.Float32, what, P, int64(c.EmbeddingWidth())); err != nil {
		return err
	}
	if c.PrefixProjection {
		ph := int64(c.PrefixProjectionHiddenSize)
		for _, dims := range [][]int64{{h, ph}, {ph}, {ph, w}, {w}} {
			if err := newBytes(&total, dtype.Float32, what, dims...); err != nil {
				return err
			}
		}
	}
	return nil
}
