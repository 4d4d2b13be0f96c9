package train

// Batch is a padded batch of examples, row-major [Size, SeqLen].
type Batch struct {
	Size, SeqLen int
	InputIDs     []int64
	// Labels are IgnoreIndex at padding.
	Labels []int64
	// AttentionMask is 1 at tokens and 0 at padding.
	AttentionMask []int64
}

// Collate truncates each example to seqLen tokens (no limit when seqLen <=
// 0) and pads it on the right with padID, up to the longest example in the
// batch, or to seqLen when padToSeqLen is set (a fixed shape for every
// step). Padding has label IgnoreIndex and attention mask 0. It panics on
// an empty list: that is a programming error.
func Collate(examples []Example, seqLen int, padID int64, padToSeqLen bool) Batch {
	if len(examples) == 0 {
		panic(errorf("Collate: no examples"))
	}
	width := 0
	for _, ex := range examples {
		width = max(width, len(ex.InputIDs))
	}
	if seqLen > 0 {
		width = min(width, seqLen)
		if padToSeqLen {
			width = seqLen
		}
	}
	b := Batch{
		Size:          len(examples),
		SeqLen:        width,
		InputIDs:      make([]int64, len(examples)*width),
		Labels:        make([]int64, len(examples)*width),
		AttentionMask: make([]int64, len(examples)*width),
	}
	for r, ex := range examples {
		row := r * width
		n := min(len(ex.InputIDs), width)
		for j := range width {
			if j < n {
				b.InputIDs[row+j] = ex.InputIDs[j]
				b.Labels[row+j] = ex.Labels[j]
				b.AttentionMask[row+j] = 1
			} else {
				b.InputIDs[row+j] = padID
				b.Labels[row+j] = IgnoreIndex
			}
		}
	}
	return b
}

// LabelTokens counts the labels that the loss sees. With shift (causal LM
// losses) the first label of each row is dropped, as the loss predicts
// token t+1 from position t.
func (b Batch) LabelTokens(shift bool) int {
	n := 0
	for r := range b.Size {
		start := 0
		if shift {
			start = 1
		}
		for _, l := range b.Labels[r*b.SeqLen+start : (r+1)*b.SeqLen] {
			if l != IgnoreIndex {
				n++
			}
		}
	}
	return n
}

// PositionIDs returns position ids for the batch: 0, 1, 2, … along each
// row. With right padding that is what HF computes from the attention
// mask for every real token.
func (b Batch) PositionIDs() []int64 {
	p := make([]int64, b.Size*b.SeqLen)
	for i := range p {
		p[i] = int64(i % max(1, b.SeqLen))
	}
	return p
}
