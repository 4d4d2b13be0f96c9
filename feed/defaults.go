package feed

import "slices"

// HasDefault reports whether the slot's role has a default value that a
// caller may feed where its data gives none: masks, token types,
// positions, caches and states.
func (s Slot) HasDefault() bool {
	switch s.Role {
	case AttentionMask, TokenTypes, Positions, Cache, State:
		return true
	}
	return false
}

// Default says in words what the role's default is, for the note that a
// caller prints once; "" where it has none.
func (s Slot) Default() string {
	switch s.Role {
	case AttentionMask:
		return "ones over the tokens and the past (zeros at padding)"
	case TokenTypes:
		return "zeros (every token in segment 0)"
	case Positions:
		return "0, 1, 2, … along each row, counted from the past length"
	case Cache:
		return "empty (past length 0)"
	case State:
		return "zeros"
	}
	return ""
}

// FeedShape returns the shape of the value to feed the slot for a batch of
// batch rows of seq new tokens after past tokens: [batch, seq] for ids,
// token types and positions, [batch, past+seq] for a mask, the declared
// shape with the batch and a length of past for a cache, and with the
// batch for a state. Fixed sizes are the model's, also where they differ
// from batch or seq (Check then says so). A dimension that neither the
// input nor its present output sizes is an error.
func (s Slot) FeedShape(batch, seq, past int) ([]int64, error) {
	rank := len(s.Shape)
	switch s.Role {
	case TokenIDs, TokenTypes, Positions, AttentionMask, Unknown:
		length := seq
		if s.Role == AttentionMask {
			length = past + seq
		}
		if s.Shape == nil {
			return []int64{int64(batch), int64(length)}, nil
		}
		if rank != 2 || s.BatchAxis != 0 || s.LengthAxis != 1 {
			return nil, errorf("input %s: want rank 2 [batch, sequence] for %s", s.Input, s.Role)
		}
		out := []int64{int64(batch), int64(length)}
		for i, d := range s.Shape {
			if d >= 0 {
				out[i] = d
			}
		}
		return out, nil
	case Cache, State, CrossCache:
		if s.Shape == nil {
			return nil, errorf("%s input %s has no declared shape", s.Role, s.Input)
		}
		out := make([]int64, rank)
		for i := range out {
			switch {
			case s.sizes[i] >= 0:
				out[i] = s.sizes[i]
			case i == s.BatchAxis:
				out[i] = int64(batch)
			case i == s.LengthAxis:
				out[i] = int64(past)
			default:
				return nil, errorf("%s input %s: cannot tell the size of dimension %d (neither it nor its present output declares it)", s.Role, s.Input, i)
			}
		}
		return out, nil
	}
	return nil, errorf("input %s: no shape for %s", s.Input, s.Role)
}

// PositionIDs returns position ids for batch rows of seq tokens after past
// tokens: past, past+1, … along each row, row after row.
func PositionIDs(batch, seq, past int) []int64 {
	p := make([]int64, batch*seq)
	for i := range p {
		p[i] = int64(past + i%max(1, seq))
	}
	return p
}

// Ones returns n ones.
func Ones(n int) []int64 {
	return slices.Repeat([]int64{1}, n)
}
