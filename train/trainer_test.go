package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// loraGPT2 returns the tiny GPT-2 with LoRA on c_attn and c_fc.
func loraGPT2(t *testing.T) (*graph.Model, []string) {
	t.Helper()
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	return injectLoRA(t, m, ".*c_attn", ".*c_fc")
}

func injectLoRA(t *testing.T, m *graph.Model, targets ...string) (*graph.Model, []string) {
	t.Helper()
	lc := adapter.DefaultLoRAConfig(targets...)
	lc.R = 4
	_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	return m, sum.Trainable()
}

// patternData is a synthetic task the tiny model can learn: each sequence
// counts upward modulo the vocabulary from a random start.
func patternData(n, length, vocab int, seed uint64) *Dataset {
	r := NewRNG(seed)
	d := &Dataset{Path: "pattern"}
	for i := range n {
		start := r.Intn(vocab)
		l := length - r.Intn(3) // a few shorter rows exercise padding
		ids := make([]int64, l)
		for j := range ids {
			ids[j] = int64((start + j) % vocab)
		}
		labels := slices.Clone(ids)
		labels[0] = IgnoreIndex
		d.Examples = append(d.Examples, Example{InputIDs: ids, Labels: labels, Line: i + 1})
	}
	return d
}

// trainSteps opens a trainer, takes opts.Steps steps and returns it (it is
// closed when the test ends) with the step losses.
func trainSteps(t *testing.T, m *graph.Model, params []string, data *Dataset, opts Options) (*Trainer, []float64) {
	t.Helper()
	tr, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	var losses []float64
	for range opts.Steps {
		r, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.Loss)
	}
	return tr, losses
}

// paramValues returns a copy of the trainer's parameter values, by name.
func paramValues(tr *Trainer) map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range tr.Params() {
		out[p.Name] = slices.Clone(p.Data)
	}
	return out
}

func testOptions() Options {
	o := DefaultOptions()
	o.BatchSize = 4
	o.LR = 1e-2
	o.Epochs = 1
	o.Session = []rt.Option{rt.WithIntraOpThreads(1)}
	return o
}

func TestTrainerLossFalls(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	opts := testOptions()
	opts.Steps = 60
	opts.Warmup = 2
	opts.LR = 5e-2
	opts.GradAccum = 2
	var logBuf bytes.Buffer
	opts.LogJSON = &logBuf
	opts.Eval = patternData(8, 8, 32, 7)
	tr, err := NewTrainer(m, params, patternData(32, 8, 32, 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before, err := tr.Evaluate(opts.Eval)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Train(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, err := tr.Evaluate(opts.Eval)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("eval loss %.4f -> %.4f (perplexity %.2f -> %.2f)", before.Loss, after.Loss, before.Perplexity, after.Perplexity)
	if !(after.Loss < before.Loss-0.1) {
		t.Errorf("eval loss did not fall: %v -> %v", before.Loss, after.Loss)
	}
	if math.Abs(after.Perplexity-math.Exp(after.Loss)) > 1e-9*after.Perplexity {
		t.Errorf("perplexity %v is not exp(loss %v)", after.Perplexity, after.Loss)
	}
	// The log holds one line per step and one per evaluation.
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	var steps, evals int
	for _, l := range lines {
		var r LogRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		switch {
		case r.Loss != nil:
			steps++
			if r.Step == 1 && *r.LR != 0 {
				t.Errorf("step 1 with warmup: learning rate %v, want 0 (HF's first step)", *r.LR)
			}
		case r.EvalLoss != nil:
			evals++
		}
	}
	if steps != 60 || evals != 3 {
		t.Errorf("log has %d step lines and %d eval lines, want 60 and 3", steps, evals)
	}
}

// TestTrainerResume checks that a run interrupted after a checkpoint and
// resumed ends with bit-identical parameters.
func TestTrainerResume(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	data := patternData(10, 6, 32, 2)
	opts := testOptions()
	opts.Steps = 4
	opts.BatchSize = 3 // 4 batches per epoch: steps cross an epoch boundary
	opts.AdamW.WeightDecay = 0.01
	opts.Schedule = "cosine"

	straight, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer straight.Close()
	if err := straight.Train(context.Background()); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	opts.CheckpointDir = dir
	opts.CheckpointEvery = 1
	opts.KeepCheckpoints = 2
	first, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for range 3 {
		if _, err := first.TrainStep(); err != nil {
			t.Fatal(err)
		}
		if _, err := first.SaveCheckpoint(dir); err != nil {
			t.Fatal(err)
		}
	}
	paths, _, err := checkpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "checkpoint-2"), filepath.Join(dir, "checkpoint-3")}; !slices.Equal(paths, want) {
		t.Errorf("checkpoints kept: got %v want %v", paths, want)
	}
	// A temporary directory left by an interrupted save is ignored.
	if err := os.Mkdir(filepath.Join(dir, ".checkpoint-9-123"), 0o755); err != nil {
		t.Fatal(err)
	}

	resumed, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if err := resumed.Train(context.Background()); err != nil {
		t.Fatal(err)
	}
	if resumed.Step() != 4 {
		t.Errorf("resumed run ended at step %d, want 4", resumed.Step())
	}
	for i, p := range straight.Params() {
		q := resumed.Params()[i]
		if !slices.Equal(p.Data, q.Data) {
			t.Errorf("param %s differs after resume", p.Name)
		}
	}
	// The interrupted run logged nothing (TrainStep does not log); the
	// resumed one logged its one step.
	if h := resumed.History(); len(h) != 1 || h[0].Step != 4 {
		t.Errorf("resumed history: got %+v, want one record of step 4", h)
	}
	// A checkpoint of another run is refused.
	opts.BatchSize = 2
	other, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = other.LoadCheckpoint(filepath.Join(dir, "checkpoint-4"))
	if err == nil || !strings.Contains(err.Error(), "was saved with batch size 3, this run has 2") {
		t.Errorf("loading another run's checkpoint: got %v", err)
	}
}

func TestTrainerNaN(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	tr, err := NewTrainer(m, params, patternData(8, 6, 32, 3), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.TrainStep(); err != nil {
		t.Fatal(err)
	}
	tr.Params()[0].Data[0] = float32(math.NaN())
	_, err = tr.TrainStep()
	if err == nil || !strings.Contains(err.Error(), "step 2: loss is NaN") {
		t.Errorf("got error %v, want one naming step 2 and a NaN loss", err)
	}
}

func TestTrainerErrors(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	data := patternData(4, 6, 32, 3)
	tests := []struct {
		name   string
		params []string
		data   *Dataset
		opts   func(*Options)
		want   string
	}{
		{"no params", nil, data, nil, "no trainable parameters"},
		{"unknown param", []string{"nope"}, data, nil, `parameter "nope" is not an initializer`},
		{"vocab", params, &Dataset{Path: "big.jsonl", Examples: []Example{{InputIDs: []int64{1, 40}, Labels: []int64{1, 40}, Line: 7}}}, nil, "big.jsonl:7: input_ids[1] is 40, outside the model's vocabulary of 32"},
		{"batch", params, data, func(o *Options) { o.BatchSize = 0 }, "batch size 0"},
		{"clip", params, data, func(o *Options) { o.Clip = -1 }, "clip -1"},
		{"schedule", params, data, func(o *Options) { o.Schedule = "step" }, `unknown schedule "step"`},
		{"output", params, data, func(o *Options) { o.Output = "scores" }, `no value "scores"`},
	}
	for i, tt := range tests {
		o := testOptions()
		if tt.opts != nil {
			tt.opts(&o)
		}
		tr, err := NewTrainer(m, tt.params, tt.data, o)
		if err == nil {
			tr.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.want)
		}
	}
}

// TestTrainerGradient checks the gradients the training graph returns for
// a batch against central finite differences of the evaluated loss.
func TestTrainerGradient(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	data := patternData(3, 6, 32, 5)
	opts := testOptions()
	opts.BatchSize = 3
	tr, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// Give B non-zero values so that A's gradient is not zero too.
	r := NewRNG(11)
	for _, p := range tr.Params() {
		for i := range p.Data {
			p.Data[i] += float32(0.2 * (2*r.Float64() - 1))
		}
	}
	b := tr.loader.Batch(0, 0)
	ZeroGrad(tr.Params())
	if _, err := tr.forwardBackward(b, 1); err != nil {
		t.Fatal(err)
	}
	var grads [][]float32
	for _, p := range tr.Params() {
		grads = append(grads, slices.Clone(p.Grad))
	}
	evalData := &Dataset{Path: "one batch"}
	for _, k := range tr.loader.Order(0) {
		evalData.Examples = append(evalData.Examples, data.Examples[k])
	}
	lossAt := func() float64 {
		res, err := tr.Evaluate(evalData)
		if err != nil {
			t.Fatal(err)
		}
		return res.Loss
	}
	const eps = 1e-2
	largest := 0.0
	for pi, p := range tr.Params() {
		for _, i := range []int{0, len(p.Data) / 2, len(p.Data) - 1} {
			old := p.Data[i]
			p.Data[i] = old + eps
			up := lossAt()
			p.Data[i] = old - eps
			down := lossAt()
			p.Data[i] = old
			want := (up - down) / (2 * eps)
			got := float64(grads[pi][i])
			largest = math.Max(largest, math.Abs(want))
			if math.Abs(got-want) > 2e-3*math.Max(1, math.Abs(want))+2e-4 {
				t.Errorf("unexpected gradient of %s[%d]: got %v, finite difference %v", p.Name, i, got, want)
			}
		}
	}
	if largest < 1e-3 {
		t.Errorf("every gradient checked is below 1e-3 (largest %v): the check proves nothing", largest)
	}
}

func TestTrainerModel(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	tr, err := NewTrainer(m, params, patternData(8, 6, 32, 3), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for range 2 {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	if out.Input(LabelsInput) != nil || m.Input(LabelsInput) != nil {
		t.Errorf("the loss's labels input leaked into a model")
	}
	for _, p := range tr.Params() {
		got, err := out.Float32s(out.Initializer(p.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, p.Data) {
			t.Errorf("initializer %s does not hold the trained values", p.Name)
		}
		orig, _ := m.Float32s(m.Initializer(p.Name))
		if slices.Equal(orig, p.Data) && strings.Contains(p.Name, "lora_B") {
			t.Errorf("%s did not change in training", p.Name)
		}
	}
}

func TestCheckpointErrors(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	tr, err := NewTrainer(m, params, patternData(8, 6, 32, 3), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	dir := t.TempDir()
	good, err := tr.SaveCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), "checkpoint-1")
		if err := os.CopyFS(p, os.DirFS(good)); err != nil {
			t.Fatal(err)
		}
		if b == nil {
			if err := os.Remove(filepath.Join(p, name)); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(filepath.Join(p, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing state", corrupt(stateFile, nil), stateFile},
		{"bad state", corrupt(stateFile, []byte("{")), stateFile},
		{"other format", corrupt(stateFile, []byte(`{"format":"x","version":1}`)), "is not a version 1"},
		{"bad params", corrupt(paramsFile, []byte("nonsense")), paramsFile},
		{"missing optimizer", corrupt(optimizerFile, nil), optimizerFile},
	}
	for i, tt := range tests {
		err := tr.LoadCheckpoint(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("test %d (%s): got error %v, want one naming %s and %q", i, tt.name, err, tt.path, tt.want)
		}
	}
	if ok, err := tr.Resume(t.TempDir()); ok || err != nil {
		t.Errorf("Resume from an empty dir: got %v, %v want false, nil", ok, err)
	}
}

// TestTrainerStop cancels Train from OnStep: it stops after that step with
// a checkpoint, and a new Train resumes to the same parameters and log as
// a run that never stopped.
func TestTrainerStop(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	data := patternData(10, 6, 32, 2)
	opts := testOptions()
	opts.Steps = 6
	opts.BatchSize = 4
	var straightLog bytes.Buffer
	opts.LogJSON = &straightLog
	straight, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer straight.Close()
	if err := straight.Train(context.Background()); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	opts.CheckpointDir = dir
	var log bytes.Buffer
	opts.LogJSON = &log
	ctx, cancel := context.WithCancel(context.Background())
	var seen []int
	opts.OnStep = func(r StepResult) {
		seen = append(seen, r.Step)
		if r.Step == 4 {
			cancel()
		}
	}
	first, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.Train(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled Train returned %v, want context.Canceled", err)
	}
	if !slices.Equal(seen, []int{1, 2, 3, 4}) {
		t.Errorf("OnStep saw steps %v, want 1 to 4", seen)
	}
	if p, _ := LatestCheckpoint(dir); p != filepath.Join(dir, "checkpoint-4") {
		t.Errorf("latest checkpoint %q, want checkpoint-4", p)
	}

	// The resumed run writes the log of the stopped one again first, so
	// the log covers the whole run.
	log.Reset()
	opts.OnStep = nil
	second, err := NewTrainer(m, params, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Train(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, p := range straight.Params() {
		if !slices.Equal(p.Data, second.Params()[i].Data) {
			t.Errorf("param %s differs from the straight run's after a stop and resume", p.Name)
		}
	}
	if log.String() != straightLog.String() {
		t.Errorf("the resumed log differs from the straight run's:\n%s\nwant\n%s", log.String(), straightLog.String())
	}
	if !strings.Contains(straightLog.String(), `"lr":`) || !strings.Contains(straightLog.String(), `"grad_norm":`) {
		t.Errorf("log lines lack lr or grad_norm: %s", straightLog.String())
	}
}

// TestTrainerDropout checks that LoRA dropout is on in training and off in
// evaluation.
func TestTrainerDropout(t *testing.T) {
	requireORT(t)
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	lc := adapter.DefaultLoRAConfig(".*c_attn")
	lc.R, lc.Dropout = 4, 0.5
	_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	data := patternData(4, 6, 32, 3)
	opts := testOptions()
	tr, err := NewTrainer(m, sum.Trainable(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// B non-zero, so that the branch and its dropout show in the loss.
	for _, p := range tr.Params() {
		for i := range p.Data {
			p.Data[i] += 0.3
		}
	}
	b := tr.loader.Batch(0, 0)
	var train []float64
	for range 3 {
		ZeroGrad(tr.Params())
		l, err := tr.forwardBackward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		train = append(train, l)
	}
	if train[0] == train[1] && train[1] == train[2] {
		t.Errorf("three training runs of one batch gave the same loss %v: dropout is off in training", train[0])
	}
	var eval []float64
	for range 2 {
		r, err := tr.Evaluate(data)
		if err != nil {
			t.Fatal(err)
		}
		eval = append(eval, r.Loss)
	}
	if eval[0] != eval[1] {
		t.Errorf("two evaluations gave %v and %v: dropout is on in evaluation", eval[0], eval[1])
	}
}

// TestTrainerLoRAPlus checks that LoRAPlusScale trains the B factors, and
// only them, at the scaled learning rate: one step with scale 4 moves B as
// a step at four times the rate does, and A as a step at the plain rate.
func TestTrainerLoRAPlus(t *testing.T) {
	requireORT(t)
	step := func(lr, plus float64) map[string][]float32 {
		m, params := loraGPT2(t)
		opts := testOptions()
		opts.Steps, opts.Schedule, opts.LR, opts.LoRAPlusScale = 1, "constant", lr, plus
		tr, _ := trainSteps(t, m, params, patternData(8, 8, 32, 1), opts)
		return paramValues(tr)
	}
	const lr = 1e-2
	plus, plain, fast := step(lr, 4), step(lr, 0), step(4*lr, 0)
	var nb int
	for name, got := range plus {
		want := plain[name]
		if strings.Contains(name, "lora_B") {
			want = fast[name]
			nb++
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: LoRA+ step differs from the step at its own rate", name)
		}
	}
	if nb == 0 {
		t.Fatal("no lora_B parameters in the test model")
	}
	if slices.Equal(plus[firstB(plus)], plain[firstB(plus)]) {
		t.Error("LoRA+ scale 4 moved B as the plain rate does")
	}
}

// firstB returns the name of a lora_B parameter in ps.
func firstB(ps map[string][]float32) string {
	for name := range ps {
		if strings.Contains(name, "lora_B") {
			return name
		}
	}
	return ""
}

// TestTrainerRecomputeProducts checks that recomputing the frozen products
// in the backward pass changes nothing in what training computes: three
// steps with them kept, recomputed, and by default (a float base: kept)
// give the same parameters, bit for bit.
func TestTrainerRecomputeProducts(t *testing.T) {
	requireORT(t)
	run := func(p Products) map[string][]float32 {
		m, err := models.Llama(models.LlamaTiny())
		if err != nil {
			t.Fatal(err)
		}
		m, params := injectLoRA(t, m, ".*q_proj", ".*v_proj")
		opts := testOptions()
		opts.Steps, opts.RecomputeProducts = 3, p
		tr, _ := trainSteps(t, m, params, patternData(8, 8, 32, 1), opts)
		return paramValues(tr)
	}
	want := run(ProductsKept)
	for _, p := range []Products{ProductsRecomputed, ProductsAuto} {
		got := run(p)
		for name := range want {
			if !slices.Equal(got[name], want[name]) {
				t.Fatalf("parameter %s differs with products %v", name, p)
			}
		}
	}
}

// TestCloseNil: a Trainer that NewTrainer did not make (an error, say) can
// be closed, so that `defer tr.Close()` before the error check is safe.
func TestCloseNil(t *testing.T) {
	var tr *Trainer
	if err := tr.Close(); err != nil {
		t.Errorf("Close of a nil Trainer: got %v, want nil", err)
	}
}
