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

// SaveCheckpoint writes the trainer's state (parameters, optimizer
// moments, step, data position and log) to dir/checkpoint-<step>, and
// returns that path. Of several ranks, rank 0 alone calls it (Train does
// so), and the batch size it records is that of all ranks together. The directory appears complete or not at all: it is
// written under a temporary name and renamed. Older checkpoints beyond
// Options.KeepCheckpoints are removed afterwards.
func (t *Trainer) SaveCheckpoint(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	st := trainerState{
		Format: stateFormat, Version: 1, Step: t.step, TotalSteps: t.total,
		Epoch:     t.epochAt(t.step * t.opts.GradAccum),
		BatchSize: t.loader.Options().BatchSize, GradAccum: t.opts.GradAccum, SeqLen: t.opts.SeqLen,
		NumExamples: len(t.data.Examples), Params: t.names, LogHistory: t.history,
		Optim: optimOf(&t.opts),
	}
	st.RNG.Kind, st.RNG.Seed, st.RNG.NextMicroBatch = rngKind, t.opts.Seed, t.step*t.opts.GradAccum
	stateJSON, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	tensors := make(map[string]*adapter.Tensor, len(t.params))
	for _, p := range t.params {
		tensors[p.Name] = adapter.NewTensor(p.Shape, p.Data)
	}
	paramsBytes, err := adapter.EncodeSafetensors(tensors, map[string]string{"format": "peftonnx parameters", "step": strconv.Itoa(t.step)})
	if err != nil {
		return "", errorf("checkpoint: %w", err)
	}
	optBytes, err := t.opt.State().MarshalBinary()
	if err != nil {
		return "", err
	}

	final := filepath.Join(dir, checkpointPrefix+strconv.Itoa(t.step))
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
	if err := pruneCheckpoints(dir, t.opts.KeepCheckpoints); err != nil {
		return final, err
	}
	return final, nil
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
	var p string
	var err error
	if t.leader() {
		p, err = LatestCheckpoint(dir)
	}
	b, err := t.shareBytes("checkpoint "+dir, []byte(p), err)
	if err != nil || len(b) == 0 {
		return false, err
	}
	return true, t.LoadCheckpoint(string(b))
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
	read := func(name string) ([]byte, error) {
		var b []byte
		var err error
		if t.leader() {
			if b, err = os.ReadFile(filepath.Join(path, name)); err != nil {
				err = errorf("checkpoint %s: %w", path, err)
			}
		}
		return t.shareBytes("checkpoint "+path, b, err)
	}
	b, err := read(stateFile)
	if err != nil {
		return err
	}
	var st trainerState
	if err := json.Unmarshal(b, &st); err != nil {
		return errorf("checkpoint %s: %s: %w", path, stateFile, err)
	}
	if st.Format != stateFormat || st.Version != 1 {
		return errorf("checkpoint %s: %s is not a version 1 %s", path, stateFile, stateFormat)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"parameters", st.Params, t.names},
		{"examples", st.NumExamples, len(t.data.Examples)},
		{"batch size", st.BatchSize, t.loader.Options().BatchSize},
		{"gradient accumulation", st.GradAccum, t.opts.GradAccum},
		{"sequence length", st.SeqLen, t.opts.SeqLen},
		{"seed", st.RNG.Seed, t.opts.Seed},
		{"data order", st.RNG.Kind, rngKind},
		{"data position", st.RNG.NextMicroBatch, st.Step * t.opts.GradAccum},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			return errorf("checkpoint %s was saved with %s %v, this run has %v", path, c.what, c.got, c.want)
		}
	}
	if err := t.checkResumedRun(path, &st); err != nil {
		return err
	}
	if b, err = read(paramsFile); err != nil {
		return err
	}
	tensors, _, err := adapter.DecodeSafetensors(b)
	if err != nil {
		return errorf("checkpoint %s: %s: %w", path, paramsFile, err)
	}
	for _, p := range t.params {
		v := tensors[p.Name]
		if v == nil || !slices.Equal(v.Shape, p.Shape) || v.DType != dtype.Float32 {
			return errorf("checkpoint %s: %s has no float32 tensor %q of shape %v", path, paramsFile, p.Name, p.Shape)
		}
	}
	if b, err = read(optimizerFile); err != nil {
		return err
	}
	var ost OptimizerState
	if err := ost.UnmarshalBinary(b); err != nil {
		return errorf("checkpoint %s: %s: %w", path, optimizerFile, err)
	}
	if ost.Step != int64(st.Step) {
		return errorf("checkpoint %s: optimizer is at step %d, trainer at %d", path, ost.Step, st.Step)
	}
	if err := t.opt.SetState(&ost); err != nil {
		return errorf("checkpoint %s: %w", path, err)
	}
	for _, p := range t.params {
		copy(p.Data, tensors[p.Name].Data)
		clear(p.Grad)
	}
	t.step = st.Step
	t.history = st.LogHistory
	return nil
}

// checkResumedRun checks the optimizer settings and step count of this
// run against the checkpoint st at path: a learning rate, schedule, warmup,
// clip or weight decay of its own would silently make another run, and a
// step count the checkpoint has already passed would train nothing. Only
// a constant schedule without warmup may go on for more or fewer steps
// than the checkpoint's run planned; the others depend on the total.
func (t *Trainer) checkResumedRun(path string, st *trainerState) error {
	if t.total < st.Step {
		return errorf("checkpoint %s is at step %d, past this run's %d steps: give more steps, or resume from another folder", path, st.Step, t.total)
	}
	if st.Optim != nil {
		got, want := *st.Optim, *optimOf(&t.opts)
		for _, c := range []struct {
			what      string
			got, want any
		}{
			{"learning rate", got.LR, want.LR},
			{"schedule", got.Schedule, want.Schedule},
			{"warmup steps", got.Warmup, want.Warmup},
			{"gradient clip", got.Clip, want.Clip},
			{"LoRA+ scale", got.LoRAPlusScale, want.LoRAPlusScale},
			{"weight decay", got.AdamW.WeightDecay, want.AdamW.WeightDecay},
			{"AdamW betas and epsilon", [3]float64{got.AdamW.Beta1, got.AdamW.Beta2, got.AdamW.Eps}, [3]float64{want.AdamW.Beta1, want.AdamW.Beta2, want.AdamW.Eps}},
		} {
			if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
				return errorf("checkpoint %s was saved with %s %v, this run has %v", path, c.what, c.got, c.want)
			}
		}
	}
	if st.TotalSteps != t.total && (t.opts.Schedule != "constant" || t.opts.Warmup != 0) {
		return errorf("checkpoint %s was saved by a run of %d steps, this run has %d; its %s schedule depends on the total, so resume with %d steps", path, st.TotalSteps, t.total, t.opts.Schedule, st.TotalSteps)
	}
	return nil
}
