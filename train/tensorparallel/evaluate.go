package tensorparallel

import (
	"fmt"
	"math"

	"github.com/peftonnx/peftonnx/train"
)

// Evaluate computes the causal LM loss of the current factors on d, in
// order, batch by batch with the training batch size, as
// train.Trainer.Evaluate does: the mean over every position that d's
// labels score. Every rank of the tensor-parallel group (and of the
// data-parallel group, which splits each batch among its ranks) calls it,
// and every rank gets the result over all of d.
func (t *Trainer) Evaluate(d *train.Dataset) (train.EvalResult, error) {
	if t.head == nil {
		return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate: trainer is closed")
	}
	if d == nil || len(d.Examples) == 0 {
		return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate: no examples")
	}
	l, err := train.NewLoader(d, train.LoaderOptions{BatchSize: t.opts.BatchSize * t.dpSize(), SeqLen: t.opts.SeqLen, PadID: t.opts.PadID, PadToSeqLen: t.opts.PadToSeqLen})
	if err != nil {
		return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate %s: %w", d.Path, err)
	}
	var sum float64
	tokens := 0
	for i := range l.NumBatches() {
		b, own := l.Batch(0, i), true
		if t.dp != nil {
			b, own = l.Shard(0, i, t.dp.Rank(), t.dp.Size())
		}
		// Every rank of the tensor-parallel group holds the same batch,
		// so they all skip it or none does.
		if !own || causalScored(b) == 0 {
			continue
		}
		logits, _, _, err := t.forward(b)
		if err != nil {
			return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate %s: %w", d.Path, err)
		}
		// A denominator of 1 gives the batch's summed cross entropy.
		s, _, n, err := vocabLoss(t.comm, logits, b.Labels, b.Size, b.SeqLen, t.width, t.ids, t.start, 1)
		if err != nil {
			return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate %s: %w", d.Path, err)
		}
		sum += s
		tokens += n
	}
	if t.dp != nil {
		all := []float64{sum, float64(tokens)}
		if err := t.dp.AllReduceSumFloat64(all); err != nil {
			return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate %s: data parallel: %w", d.Path, err)
		}
		sum, tokens = all[0], int(all[1])
	}
	if tokens == 0 {
		return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate %s: nothing to score: every label is %d", d.Path, train.IgnoreIndex)
	}
	loss := sum / float64(tokens)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return train.EvalResult{}, fmt.Errorf("tensorparallel: evaluate %s: loss is %v at step %d", d.Path, loss, t.step)
	}
	r := train.EvalResult{Loss: loss, Perplexity: math.Exp(loss), Tokens: tokens}
	// As train.Trainer.Evaluate, the result joins the log (History), and
	// so the checkpoints.
	t.history = append(t.history, train.LogRecord{Step: t.step, Epoch: t.epochAt(t.step), EvalLoss: &r.Loss, EvalPerplexity: &r.Perplexity, Tokens: tokens})
	return r, nil
}
