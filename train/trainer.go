package train

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// Trainer trains the named parameters of a model: it appends the task's
// loss, derives the gradient graph with package autodiff, runs it on one
// ONNX Runtime session, and updates the parameters in Go with AdamW, a
// learning rate schedule and gradient clipping.
//
// A Trainer holds native ONNX Runtime sessions: call Close when done.
type Trainer struct {
	opts     Options
	base     *graph.Model // the caller's model, cloned: no loss
	withLoss *graph.Model // the graph the trainer runs: loss appended, maybe upcast
	// chunkedLoss is withLoss with the loss in chunks (Options.LossChunks),
	// which the gradient graph is built from; nil for the whole loss.
	chunkedLoss *graph.Model
	loss        string
	upcast      bool

	params []*Param
	byName map[string]*Param
	feeds  []inputFeed // how the model's inputs are fed (planFeeds)
	choice TaskChoice  // the task, output, and why
	names  []string
	grads  []string // gradient output per param
	data   *Dataset
	loader *Loader
	opt    *AdamW
	sched  *Schedule
	total  int // optimizer steps in the run
	step   int // optimizer steps completed
	train  *runner
	eval   *runner
	// comm is the group of data-parallel ranks (solo when alone), and
	// gradFlat, when it has several, the gradients of every parameter in
	// one buffer, for one all-reduce per step.
	comm     Collective
	gradFlat []float32
	// history holds what was logged; logged counts the records written
	// to Options.LogJSON.
	history []LogRecord
}

// LogRecord is one line of the JSON log: a training step (Loss, LR,
// GradNorm) or an evaluation (EvalLoss, and EvalPerplexity for a causal LM
// or EvalAccuracy for a classifier).
type LogRecord struct {
	Step           int      `json:"step"`
	Loss           *float64 `json:"loss,omitempty"`
	LR             *float64 `json:"lr,omitempty"`
	GradNorm       *float64 `json:"grad_norm,omitempty"`
	EvalLoss       *float64 `json:"eval_loss,omitempty"`
	EvalPerplexity *float64 `json:"eval_perplexity,omitempty"`
	EvalAccuracy   *float64 `json:"eval_accuracy,omitempty"`
	Epoch          float64  `json:"epoch"`
	// Tokens counts what the loss scored: labelled tokens for a causal
	// LM, labelled examples for a classifier, target values for
	// regression.
	Tokens int `json:"tokens"`
}

// StepResult describes one optimizer step.
type StepResult struct {
	// Step counts optimizer steps, from 1; Total is the number in the run.
	Step, Total int
	// Loss is the mean loss over what the step's micro-batches scored;
	// GradNorm the global gradient norm before clipping; LR the learning
	// rate the step used.
	Loss, GradNorm, LR float64
	// Tokens counts what the loss scored (see LogRecord.Tokens);
	// InputTokens the tokens fed, padding left out.
	Tokens, InputTokens int
}

// NewTrainer prepares to train params, names of floating-point initializers
// of m (such as rewrite.Summary.Trainable), on data. m is not changed, and
// neither is any tensor it holds.
//
// It settles the task and output (see DetectTask), checks every example
// against the model (token ids within its vocabulary, class labels within
// its classes, regression targets of the output's size), appends the loss,
// converts a 16-bit graph to float32 unless Options.Half is KeepHalf, and
// builds the gradient graph and its session.
func NewTrainer(m *graph.Model, params []string, data *Dataset, opts Options) (*Trainer, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if len(params) == 0 {
		return nil, errorf("no trainable parameters")
	}
	if data == nil || len(data.Examples) == 0 {
		return nil, errorf("no training examples")
	}
	choice, err := resolveTask(m, &opts)
	if err != nil {
		return nil, err
	}
	if err := recordedLoRAPlus(m, &opts); err != nil {
		return nil, err
	}
	t := &Trainer{opts: opts, base: m.Clone(), byName: map[string]*Param{}, data: data, choice: choice, comm: opts.Collective}
	if t.comm == nil {
		t.comm = solo{}
	}
	t.withLoss = m.Clone()
	// DoRA's weight norms are constants of the backward pass, as HF PEFT
	// detaches them.
	detached, err := rewrite.DetachedValues(t.withLoss)
	if err != nil {
		return nil, err
	}
	if len(detached) > 0 {
		autodiff.MarkStopGradient(t.withLoss, detached...)
	}
	raiseOpset(t.withLoss)
	if opts.Half == Upcast && hasHalf(t.withLoss) {
		if err := upcast(t.withLoss, params); err != nil {
			return nil, err
		}
		t.upcast = true
	}
	if opts.SeededDropout {
		if _, err := SeedLoRADropout(t.withLoss); err != nil {
			return nil, err
		}
	}
	for _, d := range []*Dataset{data, opts.Eval} {
		if d != nil {
			if err := t.checkData(d); err != nil {
				return nil, err
			}
		}
	}
	if err := data.checkScored(opts.Task, opts.SeqLen); err != nil {
		return nil, err
	}
	for _, d := range []*Dataset{data, opts.Eval} {
		if d != nil {
			if err := checkPositions(m, d, opts.SeqLen, opts.PadToSeqLen); err != nil {
				return nil, err
			}
		}
	}
	if opts.Task == CausalLM && opts.LossChunks > 1 {
		// The training graph's loss is chunked; evaluation and the shape
		// probes run the whole one, which does no gradient work.
		t.chunkedLoss = t.withLoss.Clone()
	}
	loss, err := appendLoss(t.withLoss, opts.Task, opts.Output)
	if err != nil {
		return nil, err
	}
	t.loss = loss
	if t.chunkedLoss != nil {
		chunked, err := CausalLMLoss(t.chunkedLoss, opts.Output, WithLossChunks(opts.LossChunks))
		if err != nil {
			return nil, err
		}
		if chunked != loss {
			return nil, errorf("the chunked loss is %q, the whole one %q", chunked, loss)
		}
	}
	if err := t.planInputs(params); err != nil {
		return nil, err
	}
	for _, name := range params {
		if t.byName[name] != nil {
			return nil, errorf("parameter %q is named twice", name)
		}
		p, err := readParam(m, name)
		if err != nil {
			return nil, err
		}
		if strings.Contains(name, "lora_B") {
			p.LRScale = opts.LoRAPlusScale
		}
		t.params = append(t.params, p)
		t.byName[name] = p
		t.names = append(t.names, name)
		t.grads = append(t.grads, autodiff.GradName(name))
	}
	t.shareGradients()
	// The loader cuts global batches, of every rank's batch; each rank
	// trains on its shard of each (Loader.Shard).
	if t.loader, err = NewLoader(data, LoaderOptions{
		BatchSize: opts.BatchSize * t.comm.Size(), SeqLen: opts.SeqLen, PadID: opts.PadID, PadToSeqLen: opts.PadToSeqLen,
		Shuffle: true, Seed: opts.Seed, Inputs: dataInputs(t.feeds),
	}); err != nil {
		return nil, err
	}
	// Bad feeds fail here, before the gradient graph takes its seconds.
	if err := t.checkFirstBatch(); err != nil {
		return nil, err
	}
	t.total = opts.TotalSteps(t.loader.NumBatches())
	if t.sched, err = NewSchedule(opts.Schedule, opts.LR, opts.Warmup, t.total); err != nil {
		return nil, err
	}
	if t.opt, err = NewAdamW(opts.AdamW); err != nil {
		return nil, err
	}
	if t.distributed() {
		if err := t.checkSameRun(); err != nil {
			return nil, err
		}
	}
	g, err := t.gradientGraph()
	if err != nil {
		return nil, err
	}
	ses, err := NewSession(g, opts.Session...)
	if err != nil {
		return nil, err
	}
	if t.train, err = newRunner(ses, t.paramSet(), append([]string{t.loss}, t.grads...), opts.Task, outputDims(t.withLoss, opts.Output), t.fields()...); err != nil {
		ses.Close()
		return nil, err
	}
	return t, nil
}

// gradientGraph builds the training graph: the loss, times LossScale when
// that is not 1, differentiated with respect to the parameters.
func (t *Trainer) gradientGraph() (*graph.Model, error) {
	if onGradientBuild != nil {
		onGradientBuild()
	}
	m, target := t.withLoss, t.loss
	if t.chunkedLoss != nil {
		m = t.chunkedLoss
	}
	opts := append(t.opts.RecomputeProducts.options(),
		autodiff.WithRecomputeLayers(t.opts.RecomputeLayers),
		// Shapes past an op that autodiff does not know come from one
		// forward run on the first batch.
		autodiff.WithShapeProbe(batchProbe(t.firstBatch(), t.opts.Task, outputDims(t.withLoss, t.opts.Output), t.opts.Session)),
	)
	if t.opts.LossScale != 1 {
		m = m.Clone()
		scale := graph.NewFloat32Tensor(m.UniqueName("loss_scale"), dtype.Float32, nil, []float32{float32(t.opts.LossScale)})
		m.AddInitializer(scale)
		target = m.UniqueName("scaled_loss")
		m.NewNode("Mul", "/loss_scale/Mul", []string{t.loss, scale.Name}, []string{target})
		opts = append(opts, autodiff.WithOutputs(t.loss))
	}
	g, err := autodiff.Build(m, target, t.names, opts...)
	if err != nil {
		return nil, errorf("gradient graph: %w", err)
	}
	if target != t.loss {
		// Build's first output is the scaled loss; the trainer reads the
		// loss itself, which WithOutputs kept.
		g.RemoveOutput(target)
	}
	return g, nil
}

// appendLoss appends the task's loss on output to m.
func appendLoss(m *graph.Model, task Task, output string) (string, error) {
	switch task {
	case SequenceClassification:
		return SequenceClassificationLoss(m, output)
	case TokenClassification:
		return TokenClassificationLoss(m, output)
	case Regression:
		return MSELoss(m, output)
	}
	return CausalLMLoss(m, output)
}

// checkData checks d against the model before any loss is appended: token
// ids within the vocabulary, and the task's labels.
func (t *Trainer) checkData(d *Dataset) error {
	if vocab, ok := ModelVocab(t.withLoss); ok {
		check := d.CheckVocab
		if t.opts.Task == TokenClassification {
			check = d.checkIDs // labels are classes, checked below
		}
		if err := check(vocab); err != nil {
			return err
		}
	}
	dims := outputDims(t.withLoss, t.opts.Output)
	switch t.opts.Task {
	case TokenClassification:
		if len(dims) == 3 && dims[2] > 0 {
			return d.checkTokenLabels(int(dims[2]))
		}
	case SequenceClassification:
		classes := 0
		if len(dims) == 2 && dims[1] > 0 {
			classes = int(dims[1])
		}
		return d.checkClasses(classes)
	case Regression:
		per := 0
		if dims != nil && !slices.Contains(dims[1:], -1) {
			per = int(graph.NumElements(dims[1:]))
		}
		if err := d.checkTargets(t.opts.Output, per); err != nil {
			return err
		}
		if dims != nil {
			if _, err := targetShape(dims, 1, len(d.Examples[0].Target)); err != nil {
				return errorf("%s:%d: %w", d.Path, d.Examples[0].Line, err)
			}
		}
	}
	return nil
}

// readParam reads the initial values of an initializer as float32. Biases
// and normalization weights are exempt from weight decay, as in HF Trainer.
func readParam(m *graph.Model, name string) (*Param, error) {
	init := m.Initializer(name)
	if init == nil {
		return nil, errorf("parameter %q is not an initializer of the model", name)
	}
	switch graph.TypeOf(init) {
	case dtype.Float32, dtype.Float16, dtype.BFloat16:
	default:
		return nil, errorf("parameter %q is %s, not float32, float16 or bfloat16", name, graph.TypeOf(init))
	}
	vals, err := m.Float32s(init)
	if err != nil {
		return nil, errorf("parameter %q: %w", name, err)
	}
	p := NewParam(name, init.Dims, vals)
	lower := strings.ToLower(name)
	p.NoDecay = len(init.Dims) <= 1 || strings.Contains(lower, "bias") || strings.Contains(lower, "norm")
	return p, nil
}

// paramSet returns the parameter names as a set.
func (t *Trainer) paramSet() map[string]bool {
	s := make(map[string]bool, len(t.names))
	for _, n := range t.names {
		s[n] = true
	}
	return s
}

// Close releases the ONNX Runtime sessions. Closing twice, or a nil
// Trainer, is safe.
func (t *Trainer) Close() error {
	if t == nil {
		return nil
	}
	var first error
	for _, r := range []*runner{t.train, t.eval} {
		if err := r.close(); err != nil && first == nil {
			first = err
		}
	}
	t.train, t.eval = nil, nil
	return first
}

// Params returns the trainable parameters, in the order NewTrainer got
// their names. Their Data is current: the trainer updates it in place, and
// its sessions read it in place, so a caller that changes values must
// write into Data rather than replace the slice.
func (t *Trainer) Params() []*Param { return t.params }

// Step returns the number of optimizer steps completed.
func (t *Trainer) Step() int { return t.step }

// TotalSteps returns the number of optimizer steps in the run.
func (t *Trainer) TotalSteps() int { return t.total }

// Task returns the task the trainer runs, and Output the output its loss
// scores: as given in the options, or as DetectTask found them.
func (t *Trainer) Task() Task { return t.opts.Task }

// Output returns the model output that the loss scores.
func (t *Trainer) Output() string { return t.opts.Output }

// TaskChoice returns the task and output with the reason for them, where
// they were detected, and the warnings about them (see ExplainTask).
func (t *Trainer) TaskChoice() TaskChoice {
	c := t.choice
	c.Warnings = slices.Clone(c.Warnings)
	return c
}

// Upcast reports whether the trainer runs a float32 copy of a 16-bit
// graph (see HalfPolicy).
func (t *Trainer) Upcast() bool { return t.upcast }

// History returns the records logged so far.
func (t *Trainer) History() []LogRecord { return slices.Clone(t.history) }

// epochAt returns how many epochs the first micro steps cover.
func (t *Trainer) epochAt(micro int) float64 {
	return float64(micro) / float64(t.loader.NumBatches())
}

// TrainStep runs one optimizer step: GradAccum micro-batches forward and
// backward, the gradients accumulated weighted by what each micro-batch
// scored, clipped, and an AdamW update at the scheduled learning rate. A
// NaN or infinite loss or gradient norm is an error that names the step;
// the parameters are then left as they were before the step.
func (t *Trainer) TrainStep() (StepResult, error) {
	if t.train == nil {
		return StepResult{}, errorf("trainer is closed")
	}
	step := t.step + 1
	accum := t.opts.GradAccum
	nb := t.loader.NumBatches()
	// Each micro-batch is a global batch, of which this rank trains on its
	// shard (all of it when training alone).
	batches := make([]Batch, accum)
	own := make([]bool, accum) // this rank's shard is not empty
	counts := make([]int, accum)
	shares := make([]float64, accum) // of the global batch, in examples
	scored, fed := 0, 0
	for i := range batches {
		micro := t.step*accum + i
		global := t.loader.Batch(micro/nb, micro%nb)
		scored += global.scored(t.opts.Task)
		fed += global.InputTokens()
		batches[i], own[i] = global, true
		if t.distributed() {
			batches[i], own[i] = t.loader.Shard(micro/nb, micro%nb, t.comm.Rank(), t.comm.Size())
		}
		if own[i] {
			if t.opts.SeededDropout {
				batches[i].Dropout = &DropoutDraws{Seed: t.opts.Seed, Micro: micro, FirstRow: t.comm.Rank() * t.opts.BatchSize}
			}
			counts[i] = batches[i].scored(t.opts.Task)
			shares[i] = float64(batches[i].Size) / float64(global.Size)
		}
	}
	ZeroGrad(t.params)
	var loss float64
	for i, b := range batches {
		if !own[i] {
			continue
		}
		// Weighting by what each micro-batch (each shard) scored makes
		// the accumulated gradient that of the mean loss over all of the
		// step's labels, on every rank together.
		w := float64(counts[i]) / float64(max(1, scored))
		if scored == 0 {
			w = 1 / float64(accum)
			if t.distributed() {
				w *= shares[i]
			}
		}
		l, err := t.forwardBackward(b, float32(w))
		if err != nil {
			return StepResult{}, errorf("step %d: %w", step, err)
		}
		if math.IsNaN(l) || math.IsInf(l, 0) {
			return StepResult{}, errorf("step %d: loss is %v", step, l)
		}
		loss += w * l
	}
	if t.distributed() {
		var err error
		if loss, err = t.sumGradients(loss); err != nil {
			return StepResult{}, errorf("step %d: %w", step, err)
		}
	}
	norm := ClipGradNorm(t.params, t.opts.Clip)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return StepResult{}, errorf("step %d: gradient norm is %v", step, norm)
	}
	lr := t.sched.LR(t.step)
	if err := t.opt.Step(lr, t.params); err != nil {
		return StepResult{}, errorf("step %d: %w", step, err)
	}
	t.step = step
	return StepResult{Step: step, Total: t.total, Loss: loss, GradNorm: norm, LR: lr, Tokens: scored, InputTokens: fed}, nil
}

// forwardBackward runs the gradient graph on one batch, adds w times its
// gradients to the parameters' and returns the batch's loss.
func (t *Trainer) forwardBackward(b Batch, w float32) (float64, error) {
	out, err := t.train.run(t.byName, b, true)
	if err != nil {
		return 0, err
	}
	grads := make([][]float32, len(t.params))
	for i, name := range t.grads {
		g := out[name]
		if g.DType() == dtype.Float32 {
			grads[i] = g.Float32() // no copy: read before the next run
		} else {
			grads[i] = g.ToFloat32()
		}
	}
	// With a loss scale the gradients are those of the scaled loss; both
	// factors are powers of two or exact enough that the order is moot.
	if err := AccumulateGrad(t.params, grads, w/float32(t.opts.LossScale)); err != nil {
		return 0, err
	}
	return float64(out[t.loss].ToFloat32()[0]), nil
}

// Train runs the remaining steps of the run: it resumes from the latest
// checkpoint in Options.CheckpointDir if there is one, logs, evaluates and
// checkpoints as the options say, and calls Options.OnStep after each step.
// When ctx is done it stops after the step in progress, writes a
// checkpoint (with a CheckpointDir) and returns ctx's error. Of several
// ranks (Options.Collective), rank 0 alone writes the log and the
// checkpoints, and resumes every rank from its own; when the context of
// any rank is done, every rank stops after the same step, and those whose
// own context is not done return an error that wraps context.Canceled.
func (t *Trainer) Train(ctx context.Context) error {
	saved := -1
	if t.opts.CheckpointDir != "" {
		resumed, err := t.Resume(t.opts.CheckpointDir)
		if err != nil {
			return err
		}
		if resumed {
			saved = t.step
			for _, r := range t.history {
				if err := t.writeLog(r); err != nil {
					return err
				}
			}
		}
	}
	for t.step < t.total {
		if err := t.stopRequested(ctx); err != nil {
			if t.opts.CheckpointDir != "" && t.step != saved {
				var serr error
				if t.leader() {
					_, serr = t.SaveCheckpoint(t.opts.CheckpointDir)
				}
				// The other ranks wait for rank 0's checkpoint, and
				// learn whether it was written.
				if _, serr = t.shareBytes("checkpoint", nil, serr); serr != nil {
					return serr
				}
			}
			return err
		}
		r, err := t.TrainStep()
		if err != nil {
			return err
		}
		if t.step%t.opts.LogEvery == 0 || t.step == t.total {
			loss, norm, lr := r.Loss, r.GradNorm, r.LR
			if err := t.log(LogRecord{Step: r.Step, Epoch: t.epochAt(t.step * t.opts.GradAccum), Loss: &loss, GradNorm: &norm, LR: &lr, Tokens: r.Tokens}); err != nil {
				return err
			}
		}
		if t.opts.OnStep != nil {
			t.opts.OnStep(r)
		}
		last := t.step == t.total
		if t.opts.Eval != nil && (last || (t.opts.EvalEvery > 0 && t.step%t.opts.EvalEvery == 0)) {
			if _, err := t.Evaluate(t.opts.Eval); err != nil {
				return err
			}
		}
		if t.opts.CheckpointDir != "" && t.leader() && (last || (t.opts.CheckpointEvery > 0 && t.step%t.opts.CheckpointEvery == 0)) {
			if _, err := t.SaveCheckpoint(t.opts.CheckpointDir); err != nil {
				return err
			}
			saved = t.step
		}
	}
	return nil
}

// log records r and writes it to the JSON log, if any.
func (t *Trainer) log(r LogRecord) error {
	t.history = append(t.history, r)
	return t.writeLog(r)
}

// writeLog writes r to the JSON log, if any; of several ranks, rank 0
// alone writes it.
func (t *Trainer) writeLog(r LogRecord) error {
	if t.opts.LogJSON == nil || !t.leader() {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return errorf("log: %w", err)
	}
	if _, err := t.opts.LogJSON.Write(append(b, '\n')); err != nil {
		return errorf("log: %w", err)
	}
	return nil
}

// recordedLoRAPlus sets opts.LoRAPlusScale, where it is 0, to the
// lora_plus_scale that m's LoRA config records (rewrite.AdapterConfig;
// "inject --lora-plus-scale" records it). A model without an adapter
// record trains as it is.
func recordedLoRAPlus(m *graph.Model, opts *Options) error {
	if opts.LoRAPlusScale != 0 {
		return nil
	}
	cfg, err := rewrite.AdapterConfig(m)
	if errors.Is(err, rewrite.ErrNoAdapter) {
		return nil
	}
	if err != nil {
		return errorf("%w", err)
	}
	if lora, ok := cfg.(*adapter.LoRAConfig); ok {
		opts.LoRAPlusScale = lora.LoRAPlusScale
	}
	return nil
}

// Adapter returns the trained adapter: the one that the model NewTrainer
// got carries (LoRA or prefix, rewrite.Extract), with the current values
// of the parameters, each rounded to its tensor's element type. It equals
// rewrite.Extract of Model(), without writing the values into a copy of
// the model first. A model that records no adapter is an error that wraps
// rewrite.ErrNoAdapter.
func (t *Trainer) Adapter() (*adapter.Adapter, error) {
	values := make(map[string][]float32, len(t.params))
	for _, p := range t.params {
		values[p.Name] = p.Data
	}
	ad, err := rewrite.ExtractValues(t.base, values)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return ad, nil
}

// Model returns a copy of the model NewTrainer got, without the loss, with
// the current parameter values written into its initializers in their
// element types. Every other tensor is the model's own, bit for bit.
// rewrite.Merge folds the trained adapter into the weights; Adapter
// returns it without this copy.
func (t *Trainer) Model() (*graph.Model, error) {
	m := t.base.Clone()
	for _, p := range t.params {
		init := m.Initializer(p.Name)
		if init == nil {
			return nil, errorf("parameter %q is not an initializer of the model", p.Name)
		}
		if err := graph.SetFloat32s(init, p.Data); err != nil {
			return nil, errorf("parameter %q: %w", p.Name, err)
		}
	}
	return m, nil
}
