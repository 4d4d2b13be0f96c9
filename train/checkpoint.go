package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/atomicfile"
)

// Checkpoint files, inside a checkpoint-<step> directory.
const (
	checkpointPrefix = "checkpoint-"
	stateFile        = "trainer_state.json"
	paramsFile       = "params.safetensors"
	optimizerFile    = "optimizer.safetensors"
	stateFormat      = "peftonnx trainer state"
)

// trainerState is trainer_state.json: where the run stands, and what must
// match for a resumed run to continue the same run.
type trainerState struct {
	Format     string  `json:"format"`
	Version    int     `json:"version"`
	Step       int     `json:"step"`
	TotalSteps int     `json:"total_steps"`
	Epoch      float64 `json:"epoch"`
	// RNG is the data order's state. Each epoch's order is drawn from
	// its own SplitMix64 stream seeded from Seed and the epoch, so the
	// seed and the next micro-batch index are the whole state.
	RNG struct {
		Kind           string `json:"kind"`
		Seed           uint64 `json:"seed"`
		NextMicroBatch int    `json:"next_micro_batch"`
	} `json:"rng"`
	BatchSize   int         `json:"batch_size"`
	GradAccum   int         `json:"grad_accum"`
	SeqLen      int         `json:"seq_len"`
	NumExamples int         `json:"num_examples"`
	Params      []string    `json:"params"`
	LogHistory  []LogRecord `json:"log_history"`
	// Optim holds what shapes the updates; a checkpoint written before
	// it was recorded has none, and is not checked against it.
	Optim *optimState `json:"optim,omitempty"`
}

// optimState is what a resumed run must share with the checkpoint's for
// its updates to be the ones the uninterrupted run would make.
type optimState struct {
	LR            float64     `json:"lr"`
	Schedule      string      `json:"schedule"`
	Warmup        int         `json:"warmup"`
	Clip          float64     `json:"clip"`
	LoRAPlusScale float64     `json:"lora_plus_scale"`
	AdamW         AdamWConfig `json:"adamw"`
}

// optimOf returns the optimState of o.
func optimOf(o *Options) *optimState {
	return &optimState{LR: o.LR, Schedule: o.Schedule, Warmup: o.Warmup, Clip: o.Clip, LoRAPlusScale: o.LoRAPlusScale, AdamW: o.AdamW}
}

const rngKind = "splitmix64 per epoch"

// Checkpoint is what a checkpoint directory holds: where the run stands
// (step, data position, log), the whole of every trained parameter, and
// the optimizer's state. train.Trainer writes and reads it, and so does a
// tensor-parallel run (package tensorparallel), whose rank 0 gathers the
// ranks' shards into the whole parameters first, so that either kind of
// run resumes from the other's checkpoints.
type Checkpoint struct {
	Step, TotalSteps int
	// Seed and the step are the data order's whole state (one
	// SplitMix64 stream per epoch); the next micro-batch is
	// Step × GradAccum.
	Seed uint64
	// BatchSize is that of all data-parallel ranks together.
	BatchSize, GradAccum, SeqLen, NumExamples int
	// NumBatches is the loader's number of batches per epoch, for the
	// epoch recorded.
	NumBatches int
	// Names lists the parameters in the run's order; Params holds their
	// values.
	Names   []string
	Params  map[string]*adapter.Tensor
	Optim   *OptimizerState
	History []LogRecord
	// Options are the run's options: the learning rate, schedule,
	// warmup, clip, LoRA+ scale and AdamW settings are recorded.
	Options Options
}

// WriteCheckpoint writes c to dir/checkpoint-<step> and returns that
// path. The directory appears complete or not at all: it is written under
// a temporary name and renamed. Older checkpoints beyond keep are removed
// afterwards.
func WriteCheckpoint(dir string, c *Checkpoint, keep int) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	micro := c.Step * c.GradAccum
	st := trainerState{
		Format: stateFormat, Version: 1, Step: c.Step, TotalSteps: c.TotalSteps,
		Epoch:     float64(micro) / float64(max(1, c.NumBatches)),
		BatchSize: c.BatchSize, GradAccum: c.GradAccum, SeqLen: c.SeqLen,
		NumExamples: c.NumExamples, Params: c.Names, LogHistory: c.History,
		Optim: optimOf(&c.Options),
	}
	st.RNG.Kind, st.RNG.Seed, st.RNG.NextMicroBatch = rngKind, c.Seed, micro
	stateJSON, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	paramsBytes, err := adapter.EncodeSafetensors(c.Params, map[string]string{"format": "peftonnx parameters", "step": strconv.Itoa(c.Step)})
	if err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	optBytes, err := c.Optim.MarshalBinary()
	if err != nil {
		return "", err
	}

	final := filepath.Join(dir, checkpointPrefix+strconv.Itoa(c.Step))
	staged, err := atomicfile.CreateDir(final)
	if err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	defer staged.Abort() // a no-op once committed
	for _, f := range []struct {
		name string
		data []byte
	}{{stateFile, append(stateJSON, '\n')}, {paramsFile, paramsBytes}, {optimizerFile, optBytes}} {
		if err := staged.WriteFile(f.name, f.data, 0o644); err != nil {
			return "", errorf("checkpoint: %w", err)
		}
	}
	if err := staged.Commit(); err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	if err := pruneCheckpoints(dir, keep); err != nil {
		return final, err
	}
	return final, nil
}

// SaveCheckpoint writes the trainer's state (parameters, optimizer
// moments, step, data position and log) to dir/checkpoint-<step>, and
// returns that path (WriteCheckpoint). Of several ranks, rank 0 alone
// calls it (Train does so), and the batch size it records is that of all
// ranks together. Older checkpoints beyond Options.KeepCheckpoints are
// removed afterwards.
func (t *Trainer) SaveCheckpoint(dir string) (string, error) {
	tensors := make(map[string]*adapter.Tensor, len(t.params))
	for _, p := range t.params {
		tensors[p.Name] = adapter.NewTensor(p.Shape, p.Data)
	}
	return WriteCheckpoint(dir, &Checkpoint{
		Step: t.step, TotalSteps: t.total, Seed: t.opts.Seed,
		BatchSize: t.loader.Options().BatchSize, GradAccum: t.opts.GradAccum, SeqLen: t.opts.SeqLen,
		NumExamples: len(t.data.Examples), NumBatches: t.loader.NumBatches(),
		Names: t.names, Params: tensors, Optim: t.opt.State(), History: t.history, Options: t.opts,
	}, t.opts.KeepCheckpoints)
}

// checkpoints lists the checkpoint-<step> directories in dir, oldest
// first, with their steps. Temporary directories of interrupted saves are
// not listed.
func checkpoints(dir string) ([]string, []int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, errorf("checkpoint: %w", err)
	}
	type cp struct {
		path string
		step int
	}
	var cps []cp
	for _, e := range entries {
		s, ok := strings.CutPrefix(e.Name(), checkpointPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		step, err := strconv.Atoi(s)
		if err != nil || step < 0 {
			continue
		}
		cps = append(cps, cp{filepath.Join(dir, e.Name()), step})
	}
	slices.SortFunc(cps, func(a, b cp) int { return a.step - b.step })
	paths := make([]string, len(cps))
	steps := make([]int, len(cps))
	for i, c := range cps {
		paths[i], steps[i] = c.path, c.step
	}
	return paths, steps, nil
}

// pruneCheckpoints removes all but the newest keep checkpoints in dir.
func pruneCheckpoints(dir string, keep int) error {
	paths, _, err := checkpoints(dir)
	if err != nil {
		return err
	}
	for _, p := range paths[:max(0, len(paths)-keep)] {
		if err := os.RemoveAll(p); err != nil {
			return errorf("checkpoint: %w", err)
		}
	}
	return nil
}

// LatestCheckpoint returns the newest checkpoint directory in dir, or ""
// when there is none.
func LatestCheckpoint(dir string) (string, error) {
	paths, _, err := checkpoints(dir)
	if err != nil || len(paths) == 0 {
		return "", err
	}
	return paths[len(paths)-1], nil
}

// Resume loads the newest checkpoint in dir, if there is one, and reports
// whether it did. Of several ranks (Options.Collective), every rank calls
// it, and rank 0 alone reads dir (see LoadCheckpoint).
func (t *Trainer) Resume(dir string) (bool, error) {
	p, err := t.checkpoints().Latest(dir)
	if err != nil || p == "" {
		return false, err
	}
	return true, t.LoadCheckpoint(p)
}

// checkpoints reads checkpoints over the trainer's ranks.
func (t *Trainer) checkpoints() CheckpointSource {
	return CheckpointSource{Leader: t.leader(), Share: t.shareBytes}
}

// LoadCheckpoint restores the state that SaveCheckpoint wrote to path. The
// run must be the same one: the same parameters, dataset size, batch size,
// gradient accumulation, sequence length and seed, so that training goes on
// exactly as it would have without the interruption. Of several ranks,
// every rank calls it, rank 0 reads the files and sends them to the
// others, which need no access to path; the batch size to match is then
// that of all ranks together, so a run may resume on another number of
// ranks that trains on global batches of the same size.
func (t *Trainer) LoadCheckpoint(path string) error {
	shapes := make(map[string][]int64, len(t.params))
	for _, p := range t.params {
		shapes[p.Name] = p.Shape
	}
	c, err := ReadCheckpoint(path, t.checkpoints().Files(path), &Checkpoint{
		TotalSteps: t.total, Seed: t.opts.Seed, BatchSize: t.loader.Options().BatchSize,
		GradAccum: t.opts.GradAccum, SeqLen: t.opts.SeqLen, NumExamples: len(t.data.Examples),
		Names: t.names, Options: t.opts,
	}, shapes)
	if err != nil {
		return err
	}
	if err := t.opt.SetState(c.Optim); err != nil {
		return errorf("checkpoint %s: %w", path, err)
	}
	for _, p := range t.params {
		copy(p.Data, c.Params[p.Name].Data)
		clear(p.Grad)
	}
	t.step = c.Step
	t.history = c.History
	return nil
}

// ReadCheckpoint reads the checkpoint at path, each of its files through
// read (os.ReadFile of path's file, or what rank 0 read and sent), and
// checks it against run, the run that resumes from it: the same
// parameter names, dataset size, batch size (of all data-parallel ranks
// together), gradient accumulation, sequence length, seed and optimizer
// options, a step count (run.TotalSteps) the checkpoint has not passed,
// and shapes, each parameter's whole shape. It returns the checkpoint,
// whose Optim is at its Step.
func ReadCheckpoint(path string, read func(name string) ([]byte, error), run *Checkpoint, shapes map[string][]int64) (*Checkpoint, error) {
	b, err := read(stateFile)
	if err != nil {
		return nil, err
	}
	var st trainerState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, errorf("checkpoint %s: %s: %w", path, stateFile, err)
	}
	if st.Format != stateFormat || st.Version != 1 {
		return nil, errorf("checkpoint %s: %s is not a version 1 %s", path, stateFile, stateFormat)
	}
	if err := (savedSettings{
		{"parameters", st.Params, run.Names},
		{"examples", st.NumExamples, run.NumExamples},
		{"batch size", st.BatchSize, run.BatchSize},
		{"gradient accumulation", st.GradAccum, run.GradAccum},
		{"sequence length", st.SeqLen, run.SeqLen},
		{"seed", st.RNG.Seed, run.Seed},
		{"data order", st.RNG.Kind, rngKind},
		{"data position", st.RNG.NextMicroBatch, st.Step * run.GradAccum},
	}).check(path); err != nil {
		return nil, err
	}
	if err := checkResumedRun(path, &st, run.TotalSteps, &run.Options); err != nil {
		return nil, err
	}
	if b, err = read(paramsFile); err != nil {
		return nil, err
	}
	tensors, _, err := adapter.DecodeSafetensors(b)
	if err != nil {
		return nil, errorf("checkpoint %s: %s: %w", path, paramsFile, err)
	}
	for _, name := range run.Names {
		v := tensors[name]
		if v == nil || !slices.Equal(v.Shape, shapes[name]) || v.DType != dtype.Float32 {
			return nil, errorf("checkpoint %s: %s has no float32 tensor %q of shape %v", path, paramsFile, name, shapes[name])
		}
	}
	if b, err = read(optimizerFile); err != nil {
		return nil, err
	}
	var ost OptimizerState
	if err := ost.UnmarshalBinary(b); err != nil {
		return nil, errorf("checkpoint %s: %s: %w", path, optimizerFile, err)
	}
	if ost.Step != int64(st.Step) {
		return nil, errorf("checkpoint %s: optimizer is at step %d, trainer at %d", path, ost.Step, st.Step)
	}
	out := *run
	out.Step, out.TotalSteps, out.Params, out.Optim, out.History = st.Step, st.TotalSteps, tensors, &ost, st.LogHistory
	return &out, nil
}

// checkResumedRun checks the optimizer settings opts and step count total
// of the run that resumes from the checkpoint st at path: a learning
// rate, schedule, warmup, clip or weight decay of its own would silently
// make another run, and a step count the checkpoint has already passed
// would train nothing. Only a constant schedule without warmup may go on
// for more or fewer steps than the checkpoint's run planned; the others
// depend on the total.
func checkResumedRun(path string, st *trainerState, total int, opts *Options) error {
	if total < st.Step {
		return errorf("checkpoint %s is at step %d, past this run's %d steps: give more steps, or resume from another folder", path, st.Step, total)
	}
	if st.Optim != nil {
		got, want := *st.Optim, *optimOf(opts)
		if err := (savedSettings{
			{"learning rate", got.LR, want.LR},
			{"schedule", got.Schedule, want.Schedule},
			{"warmup steps", got.Warmup, want.Warmup},
			{"gradient clip", got.Clip, want.Clip},
			{"LoRA+ scale", got.LoRAPlusScale, want.LoRAPlusScale},
			{"weight decay", got.AdamW.WeightDecay, want.AdamW.WeightDecay},
			{"AdamW betas and epsilon", [3]float64{got.AdamW.Beta1, got.AdamW.Beta2, got.AdamW.Eps}, [3]float64{want.AdamW.Beta1, want.AdamW.Beta2, want.AdamW.Eps}},
		}).check(path); err != nil {
			return err
		}
	}
	if st.TotalSteps != total && (opts.Schedule != "constant" || opts.Warmup != 0) {
		return errorf("checkpoint %s was saved by a run of %d steps, this run has %d; its %s schedule depends on the total, so resume with %d steps", path, st.TotalSteps, total, opts.Schedule, st.TotalSteps)
	}
	return nil
}

// savedSettings are settings of a run that a checkpoint recorded (got),
// each with what this run has (want), compared by their printed values.
type savedSettings []struct {
	what      string
	got, want any
}

// check returns the error that names the first setting of the checkpoint
// at path that differs from this run's, or nil.
func (ss savedSettings) check(path string) error {
	for _, c := range ss {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			return errorf("checkpoint %s was saved with %s %v, this run has %v", path, c.what, c.got, c.want)
		}
	}
	return nil
}
