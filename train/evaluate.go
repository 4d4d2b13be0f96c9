package train

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// EvalResult is the outcome of an evaluation.
type EvalResult struct {
	// Loss is the mean loss over everything the dataset's labels score
	// (see LogRecord.Tokens).
	Loss float64
	// Perplexity is exp(Loss) for a causal LM, and 0 for other tasks.
	Perplexity float64
	// Accuracy is the share of labelled examples whose largest logit is
	// their class, for a classifier (of labelled tokens, for the token
	// loss); 0 for other tasks.
	Accuracy float64
	Tokens   int
}

// Evaluate computes the loss of the current parameters on d, in order,
// without dropout, batch by batch with the training batch size, and logs
// it. Of several ranks, every rank calls it and evaluates its shard of
// each batch, and every rank gets the result over all of d. The forward graph gets its own ONNX Runtime session, opened on first
// use.
func (t *Trainer) Evaluate(d *Dataset) (EvalResult, error) {
	if t.train == nil {
		return EvalResult{}, errorf("trainer is closed")
	}
	if d == nil || len(d.Examples) == 0 {
		return EvalResult{}, errorf("evaluate: no examples")
	}
	if d != t.opts.Eval && d != t.data {
		if err := t.checkData(d); err != nil {
			return EvalResult{}, err
		}
		if err := checkFields(d, t.feeds); err != nil {
			return EvalResult{}, err
		}
	}
	if t.eval == nil {
		if err := t.openEval(); err != nil {
			return EvalResult{}, err
		}
	}
	l, err := NewLoader(d, LoaderOptions{BatchSize: t.opts.BatchSize * t.comm.Size(), SeqLen: t.opts.SeqLen, PadID: t.opts.PadID, PadToSeqLen: t.opts.PadToSeqLen, Inputs: dataInputs(t.feeds)})
	if err != nil {
		return EvalResult{}, err
	}
	var sum float64
	tokens, correct, labelled := 0, 0, 0
	for i := range l.NumBatches() {
		b, ok := l.Batch(0, i), true
		if t.distributed() {
			b, ok = l.Shard(0, i, t.comm.Rank(), t.comm.Size())
		}
		if !ok {
			continue
		}
		n := b.scored(t.opts.Task)
		if n == 0 {
			continue
		}
		out, err := t.eval.run(t.byName, b, false)
		if err != nil {
			return EvalResult{}, errorf("evaluate %s: %w", d.Path, err)
		}
		loss := float64(out[t.loss].ToFloat32()[0])
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return EvalResult{}, errorf("evaluate %s: loss is %v at step %d", d.Path, loss, t.step)
		}
		sum += loss * float64(n)
		tokens += n
		switch t.opts.Task {
		case SequenceClassification:
			c, k := countCorrect(out[t.opts.Output].ToFloat32(), b.Classes)
			correct += c
			labelled += k
		case TokenClassification:
			c, k := countCorrect(out[t.opts.Output].ToFloat32(), b.Labels)
			correct += c
			labelled += k
		}
	}
	if t.distributed() {
		// Each rank scored its shards; the result is that of them all.
		all := []float64{sum, float64(tokens), float64(correct), float64(labelled)}
		if err := t.allReduce64("evaluate "+d.Path, all); err != nil {
			return EvalResult{}, err
		}
		sum, tokens, correct, labelled = all[0], int(all[1]), int(all[2]), int(all[3])
	}
	if tokens == 0 {
		return EvalResult{}, errorf("evaluate %s: nothing to score: every label is %d", d.Path, IgnoreIndex)
	}
	r := EvalResult{Loss: sum / float64(tokens), Tokens: tokens}
	rec := LogRecord{Step: t.step, Epoch: t.epochAt(t.step * t.opts.GradAccum), EvalLoss: &r.Loss, Tokens: tokens}
	switch t.opts.Task {
	case CausalLM:
		r.Perplexity = math.Exp(r.Loss)
		rec.EvalPerplexity = &r.Perplexity
	case SequenceClassification, TokenClassification:
		r.Accuracy = float64(correct) / float64(max(1, labelled))
		rec.EvalAccuracy = &r.Accuracy
	}
	if err := t.log(rec); err != nil {
		return EvalResult{}, err
	}
	return r, nil
}

// countCorrect counts the rows of logits [len(classes), C] whose largest
// value is at their class, and the rows that have a class.
func countCorrect(logits []float32, classes []int64) (correct, labelled int) {
	if len(classes) == 0 {
		return 0, 0
	}
	c := len(logits) / len(classes)
	for r, want := range classes {
		if want == IgnoreIndex {
			continue
		}
		labelled++
		row := logits[r*c : (r+1)*c]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if int64(best) == want {
			correct++
		}
	}
	return correct, labelled
}

// openEval opens the forward session: the model with its loss, the
// parameters turned into graph inputs so that their current values are fed.
func (t *Trainer) openEval() error {
	m := t.withLoss.Clone()
	for _, p := range t.params {
		init := m.RemoveInitializer(p.Name)
		m.RemoveInput(p.Name)
		m.AddInput(graph.TensorInfo(p.Name, graph.TypeOf(init), init.Dims))
	}
	keep := []string{t.loss}
	if t.opts.Task == SequenceClassification || t.opts.Task == TokenClassification {
		keep = append(keep, t.opts.Output)
		if !m.IsGraphOutput(t.opts.Output) {
			et := dtype.Float32
			if vi, _ := findValue(m, t.opts.Output); vi != nil {
				et = dtype.Type(vi.GetType().GetTensorType().GetElemType())
			}
			m.AddOutput(graph.TensorInfo(t.opts.Output, et, nil))
		}
	}
	keepOnly(m, keep...)
	if hasPrefix(m) {
		// A prefix is a past of several rows of new tokens, which ONNX
		// Runtime's GroupQueryAttention kernel refuses: evaluate through
		// its standard-op form, as the training graph does.
		var err error
		if m, err = autodiff.Decompose(m, "com.microsoft:GroupQueryAttention"); err != nil {
			return err
		}
	}
	s, err := NewSession(m, t.opts.Session...)
	if err != nil {
		return err
	}
	r, err := newRunner(s, t.paramSet(), keep, t.opts.Task, outputDims(t.withLoss, t.opts.Output), t.fields()...)
	if err != nil {
		s.Close()
		return err
	}
	t.eval = r
	return nil
}

// keepOnly makes names the model's only outputs.
func keepOnly(m *graph.Model, names ...string) {
	var drop []string
	for _, o := range m.Graph().Output {
		keep := false
		for _, n := range names {
			keep = keep || o.Name == n
		}
		if !keep {
			drop = append(drop, o.Name)
		}
	}
	for _, o := range drop {
		m.RemoveOutput(o)
	}
}

// hasPrefix reports whether m carries a prefix (rewrite.InjectPrefix).
func hasPrefix(m *graph.Model) bool {
	_, ok := m.Metadata(rewrite.PrefixMetadataKey)
	return ok
}
