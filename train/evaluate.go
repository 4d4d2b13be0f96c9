package train

import (
	"math"

	"github.com/peftonnx/peftonnx/graph"
)

// EvalResult is the outcome of an evaluation.
type EvalResult struct {
	// Loss is the mean loss over every labelled token of the dataset;
	// Perplexity is exp(Loss).
	Loss, Perplexity float64
	Tokens           int
}

// Evaluate computes the loss of the current parameters on d, in order,
// without dropout, batch by batch with the training batch size, and logs
// it. The forward graph gets its own ONNX Runtime session, opened on first
// use.
func (t *Trainer) Evaluate(d *Dataset) (EvalResult, error) {
	if t.trainSes == nil {
		return EvalResult{}, errorf("trainer is closed")
	}
	if t.evalSes == nil {
		if err := t.openEval(); err != nil {
			return EvalResult{}, err
		}
	}
	l, err := NewLoader(d, LoaderOptions{BatchSize: t.opts.BatchSize, SeqLen: t.opts.SeqLen, PadID: t.opts.PadID, PadToSeqLen: t.opts.PadToSeqLen})
	if err != nil {
		return EvalResult{}, err
	}
	var sum float64
	tokens := 0
	for i := range l.NumBatches() {
		b := l.Batch(0, i)
		n := b.LabelTokens(true)
		if n == 0 {
			continue
		}
		in, err := batchFeeds(t.evalFed, t.byName, b, false)
		if err != nil {
			return EvalResult{}, err
		}
		out, err := t.evalSes.Run(in, []string{t.loss})
		if err != nil {
			return EvalResult{}, errorf("evaluate %s: %v", d.Path, err)
		}
		sum += float64(out[t.loss].ToFloat32()[0]) * float64(n)
		tokens += n
	}
	if tokens == 0 {
		return EvalResult{}, errorf("evaluate %s: no labelled tokens", d.Path)
	}
	r := EvalResult{Loss: sum / float64(tokens), Tokens: tokens}
	r.Perplexity = math.Exp(r.Loss)
	loss, ppl := r.Loss, r.Perplexity
	if err := t.log(LogRecord{Step: t.step, Epoch: t.epochAt(t.step * t.opts.GradAccum), EvalLoss: &loss, EvalPerplexity: &ppl, Tokens: tokens}); err != nil {
		return EvalResult{}, err
	}
	return r, nil
}

// openEval opens the forward session: the model with its loss, the
// parameters turned into graph inputs so that their current values are fed.
func (t *Trainer) openEval() error {
	m := t.withLoss.Clone()
	for _, p := range t.params {
		init := m.RemoveInitializer(p.Name)
		m.RemoveInput(p.Name)
		dims := make([]any, len(init.Dims))
		for i, d := range init.Dims {
			dims[i] = d
		}
		m.AddInput(graph.TensorInfo(p.Name, init.DataType, dims...))
	}
	keepOnly(m, t.loss)
	s, err := newSession(m, t.opts.Session)
	if err != nil {
		return err
	}
	plan, err := planFeeds(s.Inputs(), t.paramSet())
	if err != nil {
		s.Close()
		return err
	}
	t.evalSes, t.evalFed = s, plan
	return nil
}

// keepOnly makes name the model's only output.
func keepOnly(m *graph.Model, name string) {
	var drop []string
	for _, o := range m.Graph().Output {
		if o.Name != name {
			drop = append(drop, o.Name)
		}
	}
	for _, o := range drop {
		m.RemoveOutput(o)
	}
}
