//go:build mpi

package main

import (
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
)

// tpTinyLlama saves the tiny LLaMA without a KV cache (what tensor
// parallelism shards) with LoRA on its projections: the modules that
// PaddleNLP's column- and row-parallel LoRA layers cover.
func tpTinyLlama(t *testing.T, dir string) string {
	t.Helper()
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	return trainAdaptedModel(t, dir, "llama-tp.onnx", m, ".*_proj")
}

// TestTensorParallelTrainEqualsOneProcess runs peftonnx train
// --tensor-parallel-degree 2 on 2 ranks (tensor parallel alone) and on 4
// (2 data-parallel groups × 2), and checks each run's log, step by step,
// and its adapter against one process's over the same examples in the
// same order (--batch per data-parallel group), with gradient
// accumulation and evaluations.
func TestTensorParallelTrainEqualsOneProcess(t *testing.T) {
	dir := t.TempDir()
	model := tpTinyLlama(t, dir)
	data := dpData(t, dir, "train.jsonl", 18)
	eval := dpData(t, dir, "eval.jsonl", 7)
	common := []string{model, "--data", data, "--lr", "2e-2", "--schedule", "linear", "--clip", "0.5", "--seed", "1", "--threads", "1"}
	run := func(name string, np, batch int, extra ...string) (dpRun, string) {
		out, logPath := filepath.Join(dir, name), filepath.Join(dir, name+".jsonl")
		args := append(append([]string{}, common...), "--out", out, "--log-json", logPath, "--batch", strconv.Itoa(batch))
		printed := mpiTrainOK(t, np, append(args, extra...)...)
		return readDPRun(t, out, logPath), printed
	}
	// The configs agree; the weights' digest that adapter_config.json
	// also records differs with the float rounding.
	sameConfig := func(what, got, want string) {
		t.Helper()
		g, err := adapter.LoadDir(filepath.Join(dir, got))
		if err != nil {
			t.Fatal(err)
		}
		w, err := adapter.LoadDir(filepath.Join(dir, want))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g.LoRA, w.LoRA) {
			t.Errorf("%s: the adapter's config is %+v, one process's %+v", what, *g.LoRA, *w.LoRA)
		}
	}

	steps := []string{"--steps", "3", "--grad-accum", "2", "--eval", eval, "--eval-every", "2"}
	one, _ := run("one", 1, 4, steps...)
	tp, printed := run("tp2", 2, 4, append(steps, "--tensor-parallel-degree", "2")...)
	compareDPRuns(t, "tensor parallel 2", tp, one)
	sameConfig("tensor parallel 2", "tp2", "one")
	if n := strings.Count(printed, "tensor parallel: 2 ranks × batch 4"); n != 1 {
		t.Errorf("the tensor-parallel run says %d times what it ran on, want once:\n%s", n, printed)
	}
	if n := strings.Count(printed, "trained 3 steps"); n != 1 {
		t.Errorf("the tensor-parallel run reports %d times, want once:\n%s", n, printed)
	}
	// Without merging, PaddleNLP's shards, which merge to the same adapter.
	mpiTrainOK(t, 2, append(append([]string{}, common...), append(steps, "--out", filepath.Join(dir, "tp2-shards"), "--batch", "4",
		"--tensor-parallel-degree", "2", "--merge-tensor-parallel=false", "--format", "paddle")...)...)
	shards, err := adapter.LoadPaddleShards(filepath.Join(dir, "tp2-shards"))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := adapter.LoadDir(filepath.Join(dir, "tp2"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dirNames(t, filepath.Join(dir, "tp2-shards")), []string{"checkpoint-3", adapter.PaddleLoRAConfigFile, adapter.PaddleShardFile(0), adapter.PaddleShardFile(1), "loss.png"}; !slices.Equal(got, want) {
		t.Errorf("the unmerged run wrote %v, want %v", got, want)
	}
	if len(shards.Weights) != len(merged.Weights) {
		t.Errorf("the shards hold %d modules, the merged run's adapter %d", len(shards.Weights), len(merged.Weights))
	}
	for m, w := range merged.Weights {
		for _, p := range [][2]*adapter.Tensor{{shards.Weights[m].A, w.A}, {shards.Weights[m].B, w.B}} {
			if p[0] == nil || !slices.Equal(p[0].Shape, p[1].Shape) || !slices.EqualFunc(p[0].Data, p[1].Data, func(a, b float32) bool { return math.Abs(float64(a-b)) <= 1e-6*math.Max(1, math.Abs(float64(b))) }) {
				t.Errorf("%s: the merged shards differ from the merged run's adapter", m)
			}
		}
	}
	dpTP, _ := run("dp2-tp2", 4, 2, append(steps, "--tensor-parallel-degree", "2")...)
	compareDPRuns(t, "2 data parallel × 2 tensor parallel", dpTP, one)
	sameConfig("2 data parallel × 2 tensor parallel", "dp2-tp2", "one")
}

// TestTensorParallelTrainRanks checks that a world whose size is not a
// multiple of the degree is an error on every rank, before --out is made.
func TestTensorParallelTrainRanks(t *testing.T) {
	dir := t.TempDir()
	model := tpTinyLlama(t, dir)
	data := dpData(t, dir, "train.jsonl", 4)
	out := filepath.Join(dir, "out")
	_, wait := mpiTrain(t, 3, model, "--data", data, "--out", out, "--steps", "1", "--tensor-parallel-degree", "2")
	printed, err := wait()
	if err == nil {
		t.Fatalf("mpirun -np 3 with --tensor-parallel-degree 2 succeeded:\n%s", printed)
	}
	if want := "--tensor-parallel-degree 2 does not divide the 3 ranks"; !strings.Contains(printed, want) {
		t.Errorf("the output does not say %q:\n%s", want, printed)
	}
	if trainFileExists(out) {
		t.Errorf("the failed run made %s", out)
	}
}

// TestTensorParallelTrainResume stops a tensor-parallel run (2 ranks,
// batch 4) with --stop-after, resumes it with --resume on 2 data-parallel
// × 2 tensor-parallel ranks (batch 2 each), and checks the log and the adapter against an
// uninterrupted run; the model has LoRA dropout, whose masks the ranks
// draw from the seed alone, so that any layout of ranks draws the same.
func TestTensorParallelTrainResume(t *testing.T) {
	dir := t.TempDir()
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	lc := adapter.DefaultLoRAConfig(".*_proj")
	lc.R, lc.Alpha, lc.Dropout = 4, 8, 0.3
	if _, _, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	model := savedModel(t, m, dir, "llama-tp-dropout.onnx")
	data := dpData(t, dir, "train.jsonl", 16)
	eval := dpData(t, dir, "eval.jsonl", 5)
	args := func(name string, extra ...string) []string {
		return append([]string{model, "--data", data, "--eval", eval, "--eval-every", "2", "--lr", "2e-2", "--steps", "4",
			"--seed", "3", "--threads", "1", "--tensor-parallel-degree", "2",
			"--out", filepath.Join(dir, name), "--log-json", filepath.Join(dir, name+".jsonl")}, extra...)
	}
	mpiTrainOK(t, 4, args("whole", "--batch", "2")...)
	whole := readDPRun(t, filepath.Join(dir, "whole"), filepath.Join(dir, "whole.jsonl"))

	printed := mpiTrainOK(t, 2, args("parts", "--batch", "4", "--stop-after", "2")...)
	if !strings.Contains(printed, "stopped after 2 steps at step 2 of 4") {
		t.Errorf("the stopped run does not say where it stopped:\n%s", printed)
	}
	if !trainFileExists(filepath.Join(dir, "parts", "checkpoint-2")) || trainFileExists(filepath.Join(dir, "parts", adapter.HFWeightsFile)) {
		t.Errorf("the stopped run left %v, want checkpoint-2 and no adapter", dirNames(t, filepath.Join(dir, "parts")))
	}
	printed = mpiTrainOK(t, 4, args("parts", "--batch", "2", "--resume")...)
	if !strings.Contains(printed, "resumed at step 2 of 4") || !strings.Contains(printed, "(2 in this run, resumed at step 2)") {
		t.Errorf("the resumed run does not say it resumed:\n%s", printed)
	}
	parts := readDPRun(t, filepath.Join(dir, "parts"), filepath.Join(dir, "parts.jsonl"))
	compareDPRuns(t, "stopped on 2 ranks and resumed on 2 × 2", parts, whole)
}

// TestTensorParallelTrainPrefix trains the prefix that "peftonnx prefix"
// gave the tiny LLaMA (its KV cache) on 2 tensor-parallel ranks, the
// table split by KV heads, and checks the log and the table against one
// process's over the same examples.
func TestTensorParallelTrainPrefix(t *testing.T) {
	dir := t.TempDir()
	base := savedLlama(t, dir, "llama.onnx", false)
	prefixed := filepath.Join(dir, "prefixed.onnx")
	runOK(t, "prefix", base, "-o", prefixed, "--tokens", "3")
	data := dpData(t, dir, "train.jsonl", 12)
	eval := dpData(t, dir, "eval.jsonl", 5)
	run := func(name string, np int, extra ...string) dpRun {
		out, logPath := filepath.Join(dir, name), filepath.Join(dir, name+".jsonl")
		mpiTrainOK(t, np, append([]string{prefixed, "--data", data, "--eval", eval, "--lr", "5e-2", "--steps", "3", "--batch", "4",
			"--seed", "1", "--threads", "1", "--out", out, "--log-json", logPath}, extra...)...)
		return readDPRun(t, out, logPath)
	}
	one := run("one", 1)
	tp := run("tp2", 2, "--tensor-parallel-degree", "2")
	compareDPRuns(t, "prefix on 2 tensor-parallel ranks", tp, one)
	out, errOut, code := cli(t, "train", prefixed, "--data", data, "--out", filepath.Join(dir, "x"), "--tensor-parallel-degree", "2",
		"--merge-tensor-parallel=false", "--format", "paddle")
	wantError(t, "prefix shards", out, errOut, code, 1, "carries a prefix")
}
