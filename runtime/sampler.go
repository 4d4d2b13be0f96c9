package runtime

import "slices"

// Sampler chooses the tokens of one row as Generate does (greedy, or
// sampled with temperature, top-k, top-p and a repetition penalty, from
// its own seeded source), for a caller that steps a Sequence itself, such
// as a server whose rows come and go. It is not safe for concurrent use.
type Sampler struct {
	s       *sampler
	seen    []int64 // the row's tokens, for the repetition penalty; nil without one
	scratch []float32
}

// NewSampler returns a sampler for one row that continues prompt, with
// opts' choice settings (MaxNewTokens, EOS, Feeds and the rest are the
// caller's business).
func NewSampler(opts GenerateOptions, prompt []int64) (*Sampler, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	p := &Sampler{s: newSampler(o)}
	if o.RepetitionPenalty != 1 {
		p.seen = slices.Clone(prompt)
	}
	return p, nil
}

// Pick chooses the next token of row row from out, a step's output
// [batch, seq, vocab] (Sequence.Feed's), at its last position.
func (p *Sampler) Pick(out *Tensor, row int) (int64, error) {
	if len(out.shape) != 3 || row < 0 || int64(row) >= out.shape[0] {
		return 0, errorf("sampler: row %d of an output of shape %v", row, out.shape)
	}
	vocab, seq := int(out.shape[2]), int(out.shape[1])
	off := (row*seq + seq - 1) * vocab
	var logits []float32
	logits, p.scratch = rowFloat32(out, off, vocab, p.scratch)
	id, err := p.s.pick(logits, p.seen)
	if err != nil {
		return 0, errorf("sampler: %w", err)
	}
	if p.seen != nil {
		p.seen = append(p.seen, id)
	}
	return id, nil
}
