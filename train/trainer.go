package train

import (
	"context"
	"encoding/json"
	"math"
	"slices"

	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// Trainer trains the named parameters of a model: it appends the loss,
// derives the gradient graph with package autodiff, runs it on one ONNX
// Runtime session, and updates the parameters in Go with AdamW, a learning
// rate schedule and gradient clipping.
//
// A Trainer holds native ONNX Runtime sessions: call Close when done.
type Trainer struct {
	opts     Options
	base     *graph.Model // the caller's model, cloned: no loss
	withLoss *graph.Model
	loss     string

	params   []*Param
	byName   map[string]*Param
	names    []string
	grads    []string // gradient output per param
	data     *Dataset
	loader   *Loader
	opt      *AdamW
	sched    *Schedule
	total    int // optimizer steps in the run
	step     int // optimizer steps completed
	trainSes *rt.Session
	trainFed []feed
	evalSes  *rt.Session
	evalFed  []feed
	history  []LogRecord
}

// LogRecord is one line of the JSON log: a training step (Loss, GradNorm,
// LearningRate) or an evaluation (EvalLoss, EvalPerplexity).
type LogRecord struct {
	Step           int      `json:"step"`
	Epoch          float64  `json:"epoch"`
	Loss           *float64 `json:"loss,omitempty"`
	GradNorm       *float64 `json:"grad_norm,omitempty"`
	LearningRate   *float64 `json:"learning_rate,omitempty"`
	EvalLoss       *float64 `json:"eval_loss,omitempty"`
	EvalPerplexity *float64 `json:"eval_perplexity,omitempty"`
	// Tokens counts the labelled tokens the step or evaluation scored.
	Tokens int `json:"tokens"`
}

// StepResult describes one optimizer step.
type StepResult struct {
	// Step counts optimizer steps, from 1.
	Step int
	// Loss is the mean loss over the labelled tokens of the step's
	// micro-batches; GradNorm the global gradient norm before clipping;
	// LR the learning rate the step used.
	Loss, GradNorm, LR float64
	Tokens             int
}

// NewTrainer prepares to train params, names of floating-point initializers
// of m (such as rewrite.Summary.Trainable), on data. m is not changed.
func NewTrainer(m *graph.Model, params []string, data *Dataset, opts Options) (*Trainer, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if len(params) == 0 {
		return nil, errorf("no trainable parameters")
	}
	t := &Trainer{opts: opts, base: m.Clone(), byName: map[string]*Param{}, data: data}
	t.withLoss = m.Clone()
	loss, err := CausalLMLoss(t.withLoss, opts.Output)
	if err != nil {
		return nil, err
	}
	t.loss = loss
	if vocab, ok := outputVocab(t.withLoss, opts.Output); ok {
		if err := data.CheckVocab(int(vocab)); err != nil {
			return nil, err
		}
		if opts.Eval != nil {
			if err := opts.Eval.CheckVocab(int(vocab)); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range params {
		if t.byName[name] != nil {
			return nil, errorf("parameter %q is named twice", name)
		}
		p, err := readParam(t.withLoss, name)
		if err != nil {
			return nil, err
		}
		t.params = append(t.params, p)
		t.byName[name] = p
		t.names = append(t.names, name)
		t.grads = append(t.grads, autodiff.GradName(name))
	}
	if t.loader, err = NewLoader(data, LoaderOptions{
		BatchSize: opts.BatchSize, SeqLen: opts.SeqLen, PadID: opts.PadID, PadToSeqLen: opts.PadToSeqLen,
		Shuffle: true, Seed: opts.Seed,
	}); err != nil {
		return nil, err
	}
	t.total = opts.Steps
	if t.total == 0 {
		t.total = opts.Epochs * max(1, t.loader.NumBatches()/opts.GradAccum)
	}
	if t.sched, err = NewSchedule(opts.Schedule, opts.LR, opts.Warmup, t.total); err != nil {
		return nil, err
	}
	if t.opt, err = NewAdamW(opts.AdamW); err != nil {
		return nil, err
	}
	g, err := autodiff.Build(t.withLoss, loss, params)
	if err != nil {
		return nil, errorf("gradient graph: %v", err)
	}
	if t.trainSes, err = newSession(g, opts.Session); err != nil {
		return nil, err
	}
	if t.trainFed, err = planFeeds(t.trainSes.Inputs(), t.paramSet()); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// outputVocab returns the size of the last dimension of a declared output.
func outputVocab(m *graph.Model, name string) (int64, bool) {
	vi, _ := findValue(m, name)
	if vi == nil {
		return 0, false
	}
	_, dims, ok := graph.ValueShape(vi)
	if !ok || len(dims) == 0 || dims[len(dims)-1] <= 0 {
		return 0, false
	}
	return dims[len(dims)-1], true
}

// readParam reads the initial values of an initializer as float32.
func readParam(m *graph.Model, name string) (*Param, error) {
	init := m.Initializer(name)
	if init == nil {
		return nil, errorf("parameter %q is not an initializer of the model", name)
	}
	switch init.DataType {
	case graph.Float32, graph.Float16, graph.BFloat16:
	default:
		return nil, errorf("parameter %q is %s, not float32, float16 or bfloat16", name, graph.DTypeName(init.DataType))
	}
	vals, err := m.Float32s(init)
	if err != nil {
		return nil, errorf("parameter %q: %v", name, unprefixed(err))
	}
	return NewParam(name, init.Dims, vals), nil
}

// paramSet returns the parameter names as a set.
func (t *Trainer) paramSet() map[string]bool {
	s := make(map[string]bool, len(t.names))
	for _, n := range t.names {
		s[n] = true
	}
	return s
}

// newSession opens an ONNX Runtime session over m.
func newSession(m *graph.Model, opts []rt.Option) (*rt.Session, error) {
	b, err := m.Marshal()
	if err != nil {
		return nil, errorf("%v", err)
	}
	s, err := rt.NewSessionFromBytes(b, opts...)
	if err != nil {
		return nil, errorf("%v", err)
	}
	return s, nil
}

// Close releases the ONNX Runtime sessions.
func (t *Trainer) Close() error {
	var first error
	for _, s := range []*rt.Session{t.trainSes, t.evalSes} {
		if s != nil {
			if err := s.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	t.trainSes, t.evalSes = nil, nil
	return first
}

// Params returns the trainable parameters, in the order NewTrainer got
// their names. Their Data is current: the trainer updates it in place.
func (t *Trainer) Params() []*Param { return t.params }

// Step returns the number of optimizer steps completed.
func (t *Trainer) Step() int { return t.step }

// TotalSteps returns the number of optimizer steps in the run.
func (t *Trainer) TotalSteps() int { return t.total }

// History returns the records logged so far.
func (t *Trainer) History() []LogRecord { return slices.Clone(t.history) }

// epochAt returns how many epochs the first micro steps cover.
func (t *Trainer) epochAt(micro int) float64 {
	return float64(micro) / float64(t.loader.NumBatches())
}

// TrainStep runs one optimizer step: GradAccum micro-batches forward and
// backward, the gradients accumulated token-weighted, clipped, and an AdamW
// update at the scheduled learning rate. A NaN or infinite loss or
// gradient norm is an error that names the step.
func (t *Trainer) TrainStep() (StepResult, error) {
	if t.trainSes == nil {
		return StepResult{}, errorf("trainer is closed")
	}
	step := t.step + 1
	accum := t.opts.GradAccum
	nb := t.loader.NumBatches()
	batches := make([]Batch, accum)
	counts := make([]int, accum)
	tokens := 0
	for i := range batches {
		micro := t.step*accum + i
		batches[i] = t.loader.Batch(micro/nb, micro%nb)
		counts[i] = batches[i].LabelTokens(true)
		tokens += counts[i]
	}
	ZeroGrad(t.params)
	var loss float64
	for i, b := range batches {
		// Token weighting makes the accumulated gradient that of the mean
		// loss over every labelled token of the step.
		w := float64(counts[i]) / float64(max(1, tokens))
		if tokens == 0 {
			w = 1 / float64(accum)
		}
		l, grads, err := t.forwardBackward(b)
		if err != nil {
			return StepResult{}, errorf("step %d: %v", step, unprefixed(err))
		}
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return StepResult{}, errorf("step %d: loss is %v", step, l)
		}
		loss += w * l
		if err := AccumulateGrad(t.params, grads, float32(w)); err != nil {
			return StepResult{}, errorf("step %d: %v", step, unprefixed(err))
		}
	}
	norm := ClipGradNorm(t.params, t.opts.Clip)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return StepResult{}, errorf("step %d: gradient norm is %v", step, norm)
	}
	lr := t.sched.LR(t.step)
	if err := t.opt.Step(lr, t.params); err != nil {
		return StepResult{}, errorf("step %d: %v", step, unprefixed(err))
	}
	t.step = step
	return StepResult{Step: step, Loss: loss, GradNorm: norm, LR: lr, Tokens: tokens}, nil
}

// forwardBackward runs the gradient graph on one batch.
func (t *Trainer) forwardBackward(b Batch) (float64, [][]float32, error) {
	in, err := batchFeeds(t.trainFed, t.byName, b, true)
	if err != nil {
		return 0, nil, err
	}
	out, err := t.trainSes.Run(in, append([]string{t.loss}, t.grads...))
	if err != nil {
		return 0, nil, err
	}
	grads := make([][]float32, len(t.grads))
	for i, name := range t.grads {
		grads[i] = out[name].ToFloat32()
	}
	return float64(out[t.loss].ToFloat32()[0]), grads, nil
}

// Train runs the remaining steps of the run: it resumes from the latest
// checkpoint in Options.CheckpointDir if there is one, logs, evaluates and
// checkpoints as the options say, and stops early, with ctx's error, when
// ctx is done.
func (t *Trainer) Train(ctx context.Context) error {
	if t.opts.CheckpointDir != "" {
		if _, err := t.Resume(t.opts.CheckpointDir); err != nil {
			return err
		}
	}
	for t.step < t.total {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := t.TrainStep()
		if err != nil {
			return err
		}
		if t.step%t.opts.LogEvery == 0 || t.step == t.total {
			loss, norm, lr := r.Loss, r.GradNorm, r.LR
			if err := t.log(LogRecord{Step: r.Step, Epoch: t.epochAt(t.step * t.opts.GradAccum), Loss: &loss, GradNorm: &norm, LearningRate: &lr, Tokens: r.Tokens}); err != nil {
				return err
			}
		}
		last := t.step == t.total
		if t.opts.Eval != nil && (last || (t.opts.EvalEvery > 0 && t.step%t.opts.EvalEvery == 0)) {
			if _, err := t.Evaluate(t.opts.Eval); err != nil {
				return err
			}
		}
		if t.opts.CheckpointDir != "" && (last || (t.opts.CheckpointEvery > 0 && t.step%t.opts.CheckpointEvery == 0)) {
			if _, err := t.SaveCheckpoint(t.opts.CheckpointDir); err != nil {
				return err
			}
		}
	}
	return nil
}

// log records r and writes it to the JSON log, if any.
func (t *Trainer) log(r LogRecord) error {
	t.history = append(t.history, r)
	if t.opts.LogJSON == nil {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return errorf("log: %v", err)
	}
	if _, err := t.opts.LogJSON.Write(append(b, '\n')); err != nil {
		return errorf("log: %v", err)
	}
	return nil
}

// Model returns a copy of the model NewTrainer got, without the loss, with
// the current parameter values written into its initializers in their
// element types. rewrite.ExtractAdapter reads the trained adapter from it.
func (t *Trainer) Model() (*graph.Model, error) {
	m := t.base.Clone()
	for _, p := range t.params {
		init := m.Initializer(p.Name)
		if init == nil {
			return nil, errorf("parameter %q is not an initializer of the model", p.Name)
		}
		if err := graph.SetFloat32s(init, p.Data); err != nil {
			return nil, errorf("parameter %q: %v", p.Name, unprefixed(err))
		}
	}
	return m, nil
}
