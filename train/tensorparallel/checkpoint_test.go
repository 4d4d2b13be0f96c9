package tensorparallel

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/train"
)

// onRanks runs body on degree tensor-parallel ranks (goroutines of one
// local group) and returns their errors, by rank.
func onRanks(degree int, body func(r int, c train.Collective) error) []error {
	ranks := train.NewLocalGroup(degree)
	errs := make([]error, degree)
	var wg sync.WaitGroup
	for r := range degree {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = body(r, ranks[r])
		}()
	}
	wg.Wait()
	return errs
}

// tpSteps trains run on degree ranks: each rank resumes from resume
// (when not ""), trains until step `until`, and, when save is not "",
// saves a checkpoint there. It returns the losses of the steps it took
// (rank 0's; every rank's must be the same) and the merged adapter.
func tpSteps(t *testing.T, run tinyRun, degree int, resume string, until int, save string) ([]float64, *adapter.Adapter, string) {
	t.Helper()
	losses := make([][]float64, degree)
	shards := make([]*adapter.Adapter, degree)
	paths := make([]string, degree)
	errs := onRanks(degree, func(r int, c train.Collective) error {
		tr, err := New(run.cfg, run.full, run.whole, run.data, c, run.opts)
		if err != nil {
			return err
		}
		defer tr.Close()
		if resume != "" {
			ok, err := tr.Resume(resume)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no checkpoint in %s", resume)
			}
		}
		for tr.Step() < until {
			res, err := tr.TrainStep()
			if err != nil {
				return err
			}
			losses[r] = append(losses[r], res.Loss)
		}
		if save != "" {
			if paths[r], err = tr.SaveCheckpoint(save); err != nil {
				return err
			}
		}
		shards[r] = tr.Adapter()
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r := range degree {
		if !slices.Equal(losses[r], losses[0]) || paths[r] != paths[0] {
			t.Fatalf("rank %d: losses %v, checkpoint %q; rank 0 %v, %q", r, losses[r], paths[r], losses[0], paths[0])
		}
	}
	merged, err := adapter.MergeTensorParallel(shards)
	if err != nil {
		t.Fatal(err)
	}
	return losses[0], merged, paths[0]
}

// canonicalNames returns the factors of a in the order a tensor-parallel
// checkpoint lists them: the modules in order, lora_A then lora_B.
func canonicalNames(a *adapter.Adapter) []string {
	var names []string
	for _, m := range a.Modules() {
		names = append(names, m+loraA, m+loraB)
	}
	return names
}

// TestTensorParallelResume trains the tiny run, with seeded LoRA dropout,
// on 2 tensor-parallel ranks for 5 steps without a stop, and again for 2
// steps, a checkpoint, new trainers that resume from it and 3 more steps:
// the losses and the merged adapter are the uninterrupted run's, bit for
// bit.
func TestTensorParallelResume(t *testing.T) {
	requireORT(t)
	// Seeded dropout: its draws, too, resume where they stopped.
	run := newTinyRunWithDropout(t, 31, 0.2)
	run.opts.Schedule, run.opts.Warmup = "linear", 1 // the step matters to the learning rate
	wantLosses, wantAd, _ := tpSteps(t, run, 2, "", 5, "")

	dir := t.TempDir()
	first, _, path := tpSteps(t, run, 2, "", 2, dir)
	if path != filepath.Join(dir, "checkpoint-2") {
		t.Fatalf("checkpoint at %q", path)
	}
	rest, gotAd, _ := tpSteps(t, run, 2, dir, 5, "")
	got := append(first, rest...)
	if !slices.Equal(got, wantLosses) {
		t.Errorf("losses with a stop after step 2 %v, without %v", got, wantLosses)
	}
	if d := adapterDiff(gotAd, wantAd); d != 0 {
		t.Errorf("the resumed adapter differs from the uninterrupted one by %.3g", d)
	}
}

// TestTensorParallelCheckpointIsTrainers checks that a tensor-parallel
// checkpoint is train.Trainer's: one process on the whole model resumes
// from the checkpoint of 2 tensor-parallel ranks after step 2 and
// continues as one process that never stopped does, and 2
// tensor-parallel ranks resume from one process's checkpoint likewise.
func TestTensorParallelCheckpointIsTrainers(t *testing.T) {
	requireORT(t)
	run := newTinyRun(t, 31)
	run.opts.Schedule, run.opts.Warmup = "linear", 1
	dir := t.TempDir()
	_, _, path := tpSteps(t, run, 2, "", 2, dir)

	// One process on the whole model throughout, saving a checkpoint
	// after step 2 as it goes.
	run.trainable = canonicalNames(run.whole)
	oneDir := t.TempDir()
	one, err := train.NewTrainer(run.adapted, run.trainable, run.data, run.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	var oneLosses []float64
	for one.Step() < run.opts.Steps {
		r, err := one.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		oneLosses = append(oneLosses, r.Loss)
		if r.Step == 2 {
			if _, err := one.SaveCheckpoint(oneDir); err != nil {
				t.Fatal(err)
			}
		}
	}
	oneAd, err := one.Adapter()
	if err != nil {
		t.Fatal(err)
	}

	// One process from the tensor-parallel checkpoint.
	resumed, err := train.NewTrainer(run.adapted, run.trainable, run.data, run.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if err := resumed.LoadCheckpoint(path); err != nil {
		t.Fatal(err)
	}
	for resumed.Step() < run.opts.Steps {
		r, err := resumed.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		if w := oneLosses[r.Step-1]; math.Abs(r.Loss-w) > 1e-6*w {
			t.Errorf("one process from the tensor-parallel checkpoint, step %d: loss %v, uninterrupted %v", r.Step, r.Loss, w)
		}
	}
	ad, err := resumed.Adapter()
	if err != nil {
		t.Fatal(err)
	}
	if d := adapterDiff(ad, oneAd); d > 1e-5 {
		t.Errorf("one process from the tensor-parallel checkpoint: adapter differs from the uninterrupted one by %.3g", d)
	}

	// Tensor parallel from one process's checkpoint.
	rest, gotAd, _ := tpSteps(t, run, 2, oneDir, 5, "")
	for i, g := range rest {
		if w := oneLosses[2+i]; math.Abs(g-w) > 1e-6*w {
			t.Errorf("tensor parallel from one process's checkpoint, step %d: loss %v, one process %v", 3+i, g, w)
		}
	}
	if d := adapterDiff(gotAd, oneAd); d > 1e-5 {
		t.Errorf("tensor parallel from one process's checkpoint: adapter differs from one process's by %.3g", d)
	}
}

// TestTensorParallelCheckpointErrors checks that a checkpoint that cannot
// be written, or belongs to another run, is an error on every rank, and
// that nothing is half-written.
func TestTensorParallelCheckpointErrors(t *testing.T) {
	requireORT(t)
	run := newTinyRun(t, 31)
	run.opts.Steps = 1
	dir := t.TempDir()
	_, _, path := tpSteps(t, run, 2, "", 1, dir)

	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	other := run.opts
	other.BatchSize = 2
	for _, c := range []struct {
		name string
		opts train.Options
		body func(tr *Trainer) error
		want string
	}{
		{"unwritable", run.opts, func(tr *Trainer) error { _, err := tr.SaveCheckpoint(blocked); return err }, "not a directory"},
		{"another batch size", other, func(tr *Trainer) error { return tr.LoadCheckpoint(path) }, "batch size 4, this run has 2"},
		{"missing", run.opts, func(tr *Trainer) error { return tr.LoadCheckpoint(filepath.Join(dir, "checkpoint-9")) }, "checkpoint-9"},
	} {
		errs := onRanks(2, func(r int, comm train.Collective) error {
			tr, err := New(run.cfg, run.full, run.whole, run.data, comm, c.opts)
			if err != nil {
				return err
			}
			defer tr.Close()
			return c.body(tr)
		})
		for r, err := range errs {
			if err == nil || (r == 0 && !strings.Contains(err.Error(), c.want)) {
				t.Errorf("%s: rank %d: error %v, want one that says %q", c.name, r, err, c.want)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "checkpoint-1" {
		t.Errorf("checkpoint folder holds %d entries, want checkpoint-1 alone", len(entries))
	}
}
