package tensorparallel

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
)

// newTinyPrefixRun is the tiny run with prefix tuning of 3 virtual tokens
// in place of LoRA: one process trains the model with its KV cache
// replaced by the prefix (rewrite.InjectPrefix), the tensor-parallel
// ranks the table's shards of their KV heads.
func newTinyPrefixRun(t *testing.T, vocab int) tinyRun {
	t.Helper()
	c := models.LlamaTiny()
	c.VocabSize, c.InitStd = vocab, 0.1
	full, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	adapted := full.Clone()
	site, sum, err := rewrite.InjectPrefix(adapted, adapter.PrefixConfig{NumPrefixTokens: 3}, rewrite.PrefixReplacePast(), rewrite.PrefixSeed(2))
	if err != nil {
		t.Fatal(err)
	}
	// A table of values of the keys' and values' size, so that the
	// prefix weighs in the attention.
	init := adapted.Initializer(site.Prompt)
	v := make([]float32, graph.NumElements(init.Dims))
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range v {
		v[i] = rng.Float32()*2 - 1
	}
	if err := graph.SetFloat32s(init, v); err != nil {
		t.Fatal(err)
	}
	whole, err := rewrite.ExtractPrefix(adapted)
	if err != nil {
		t.Fatal(err)
	}
	opts := train.DefaultOptions()
	opts.BatchSize, opts.Steps, opts.LR, opts.Clip, opts.Seed = 4, 5, 1e-2, 0.5, 1
	opts.Session = []rt.Option{rt.WithIntraOpThreads(1), rt.WithOptimizationLevel(rt.OptimizeBasic)}
	return tinyRun{cfg: c, full: full, whole: whole, adapted: adapted, trainable: sum.Trainable(), data: countingData(12, vocab), opts: opts}
}

// TestTensorParallelPrefix trains a prefix on 2 tensor-parallel ranks,
// each holding the table's keys and values of its KV head, and checks the
// losses and the merged table against one process; and that the prefix
// moves the loss (a prefix the attention ignored would train nothing).
func TestTensorParallelPrefix(t *testing.T) {
	requireORT(t)
	run := newTinyPrefixRun(t, 31)
	want, wantAd := run.oneProcess(t)
	got, gotAd, _ := tpSteps(t, run, 2, "", run.opts.Steps, "")
	for i, w := range want {
		if math.Abs(got[i]-w) > 1e-6*w {
			t.Errorf("step %d: loss %v, one process %v", i+1, got[i], w)
		}
	}
	if math.Abs(want[len(want)-1]-want[0]) < 1e-3 {
		t.Errorf("the prefix's training moved the loss from %v to %v only", want[0], want[len(want)-1])
	}
	d := adapterDiff(gotAd, wantAd)
	t.Logf("merged prompt table within %.3g of one process's", d)
	if d > 1e-5 {
		t.Errorf("merged prompt table differs from one process's by %.3g", d)
	}
}

// TestDataTimesTensorParallelPrefix is TestDataTimesTensorParallel with a
// prefix.
func TestDataTimesTensorParallelPrefix(t *testing.T) {
	requireORT(t)
	dataTimesTensorParallel(t, newTinyPrefixRun(t, 31))
}

// TestTensorParallelPrefixResume stops the prefix run after 2 steps, with
// a checkpoint of the whole table and its moments, and resumes it on new
// ranks: the losses and the table are the uninterrupted run's, bit for
// bit; and one process resumes from the checkpoint as from its own.
func TestTensorParallelPrefixResume(t *testing.T) {
	requireORT(t)
	run := newTinyPrefixRun(t, 31)
	wantLosses, wantAd, _ := tpSteps(t, run, 2, "", 5, "")
	dir := t.TempDir()
	first, _, path := tpSteps(t, run, 2, "", 2, dir)
	rest, gotAd, _ := tpSteps(t, run, 2, dir, 5, "")
	if got := append(first, rest...); !slices.Equal(got, wantLosses) {
		t.Errorf("losses with a stop after step 2 %v, without %v", got, wantLosses)
	}
	if d := adapterDiff(gotAd, wantAd); d != 0 {
		t.Errorf("the resumed table differs from the uninterrupted one by %.3g", d)
	}
	oneLosses, oneAd := run.oneProcess(t)
	one, err := train.NewTrainer(run.adapted, run.trainable, run.data, run.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if err := one.LoadCheckpoint(path); err != nil {
		t.Fatal(err)
	}
	for one.Step() < run.opts.Steps {
		r, err := one.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		if w := oneLosses[r.Step-1]; math.Abs(r.Loss-w) > 1e-6*w {
			t.Errorf("one process from the tensor-parallel checkpoint, step %d: loss %v, uninterrupted %v", r.Step, r.Loss, w)
		}
	}
	ad, err := one.Adapter()
	if err != nil {
		t.Fatal(err)
	}
	if d := adapterDiff(ad, oneAd); d > 1e-5 {
		t.Errorf("one process from the tensor-parallel checkpoint: table differs from the uninterrupted one's by %.3g", d)
	}
}
