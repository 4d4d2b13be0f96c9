package train

// Batch is a padded batch of examples, row-major [Size, SeqLen].
type Batch struct {
	Size, SeqLen int
	InputIDs     []int64
	// Labels are IgnoreIndex at padding.
	Labels []int64
	// AttentionMask is 1 at tokens and 0 at padding.
	AttentionMask []int64
	// Classes holds each example's class label [Size] (IgnoreIndex where
	// it has none), and Targets each example's regression target,
	// concatenated, when every example has one of the same length.
	Classes []int64
	Targets []float32
	// Inputs holds the values of the data fields that feed model inputs
	// as they are (LoaderOptions.Inputs), by field: [Size, SeqLen] for a
	// field with a value per token, padded with 0 like the token ids;
	// [Size, n] for a field with n values per example.
	Inputs map[string][]float64
	// Dropout, when not nil, gives a training batch's seeded LoRA
	// dropout its draws (Options.SeededDropout).
	Dropout *DropoutDraws
}

// DataInput is a data field that feeds a model input as it is: one value
// per token (PerToken: truncated and padded with 0 as the token ids are),
// or the same number of values in every example.
type DataInput struct {
	Field    string
	PerToken bool
}

// collateInputs fills b.Inputs from the examples' fields.
func collateInputs(b *Batch, examples []Example, inputs []DataInput) {
	if len(inputs) == 0 {
		return
	}
	b.Inputs = make(map[string][]float64, len(inputs))
	for _, in := range inputs {
		if !in.PerToken {
			var v []float64
			for _, ex := range examples {
				v = append(v, ex.Fields[in.Field]...)
			}
			b.Inputs[in.Field] = v
			continue
		}
		v := make([]float64, b.Size*b.SeqLen)
		for r, ex := range examples {
			f := ex.Fields[in.Field]
			copy(v[r*b.SeqLen:(r+1)*b.SeqLen], f[:min(len(f), b.SeqLen)])
		}
		b.Inputs[in.Field] = v
	}
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
	b.Classes = make([]int64, len(examples))
	targets := len(examples[0].Target)
	for r, ex := range examples {
		b.Classes[r] = IgnoreIndex
		if ex.HasLabel {
			b.Classes[r] = ex.Label
		}
		if len(ex.Target) != targets {
			targets = 0
		}
	}
	if targets > 0 {
		b.Targets = make([]float32, 0, len(examples)*targets)
		for _, ex := range examples {
			b.Targets = append(b.Targets, ex.Target...)
		}
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

// scored returns how much of the batch the task's loss averages over:
// labelled tokens after the shift for a causal LM, labelled tokens for
// the token loss, labelled examples for
// classification, target values for regression. Gradient accumulation and
// evaluation weight each batch by it.
func (b Batch) scored(task Task) int {
	switch task {
	case SequenceClassification:
		n := 0
		for _, c := range b.Classes {
			if c != IgnoreIndex {
				n++
			}
		}
		return n
	case Regression:
		return len(b.Targets)
	case TokenClassification:
		return b.LabelTokens(false)
	}
	return b.LabelTokens(true)
}

// InputTokens counts the tokens of the batch that are not padding.
func (b Batch) InputTokens() int {
	n := 0
	for _, m := range b.AttentionMask {
		n += int(m)
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
