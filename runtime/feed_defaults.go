package runtime

import "github.com/peftonnx/peftonnx/feed"

// DefaultFeed returns the value that package feed documents for an input
// that the caller does not give, for batch rows of seq new tokens after
// past tokens, in the element type and shape the model declares: a mask of
// ones over past and new tokens, token types of zeros, positions past,
// past+1, …, a cache of length past (zeros: a caller carries the real
// one), a state of zeros. Slots whose role has no default (token ids,
// cross-attention caches, unknown inputs) are an error.
func DefaultFeed(s feed.Slot, batch, seq, past int) (*Tensor, error) {
	if !s.HasDefault() {
		return nil, errorf("input %s (%s) has no default: it must be given", s.Input, s.Role)
	}
	shape, err := s.FeedShape(batch, seq, past)
	if err != nil {
		return nil, errorf("%w", err)
	}
	switch s.Role {
	case feed.AttentionMask:
		n, err := numElements(shape)
		if err != nil {
			return nil, err
		}
		return FromInt64s(s.DType, shape, feed.Ones(n))
	case feed.Positions:
		if len(shape) != 2 {
			return nil, errorf("input %s: positions want [batch, sequence]", s.Input)
		}
		return FromInt64s(s.DType, shape, feed.PositionIDs(int(shape[0]), int(shape[1]), past))
	}
	return Zeros(s.DType, shape)
}
