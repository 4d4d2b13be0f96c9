package tensorparallel

import (
	"math"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/train"
)

// TestTensorParallelAccumulateAndEvaluate trains on 2 tensor-parallel
// ranks (goroutines) with micro-batches of 2 and gradient accumulation 2,
// and checks the losses, the merged adapter and the evaluation loss on
// held-out data, before and after training, against train.Trainer on the
// whole model with the same options. Its vocabulary of 31 is padded on
// the second rank.
func TestTensorParallelAccumulateAndEvaluate(t *testing.T) {
	requireORT(t)
	run := newTinyRun(t, 31)
	run.opts.BatchSize, run.opts.GradAccum, run.opts.Steps = 2, 2, 4
	eval := heldOut(31)

	one, err := train.NewTrainer(run.adapted, run.trainable, run.data, run.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	before, err := one.Evaluate(eval)
	if err != nil {
		t.Fatal(err)
	}
	var want []float64
	for range run.opts.Steps {
		r, err := one.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Loss)
	}
	after, err := one.Evaluate(eval)
	if err != nil {
		t.Fatal(err)
	}
	wantAd, err := one.Adapter()
	if err != nil {
		t.Fatal(err)
	}

	const degree = 2
	ranks := train.NewLocalGroup(degree)
	shards := make([]*adapter.Adapter, degree)
	losses := make([][]float64, degree)
	evals := make([][2]train.EvalResult, degree)
	errs := make([]error, degree)
	var wg sync.WaitGroup
	for r := range degree {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr, err := New(run.cfg, run.full, run.whole, run.data, ranks[r], run.opts)
			if err != nil {
				errs[r] = err
				return
			}
			defer tr.Close()
			if evals[r][0], err = tr.Evaluate(eval); err != nil {
				errs[r] = err
				return
			}
			for range run.opts.Steps {
				res, err := tr.TrainStep()
				if err != nil {
					errs[r] = err
					return
				}
				losses[r] = append(losses[r], res.Loss)
			}
			if evals[r][1], err = tr.Evaluate(eval); err != nil {
				errs[r] = err
				return
			}
			shards[r] = tr.Adapter()
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r := range degree {
		for i, w := range want {
			if g := losses[r][i]; math.Abs(g-w) > 1e-6*w {
				t.Errorf("rank %d step %d: loss %v, one process %v", r, i+1, g, w)
			}
		}
		for i, w := range []train.EvalResult{before, after} {
			g := evals[r][i]
			if math.Abs(g.Loss-w.Loss) > 1e-6*w.Loss || g.Tokens != w.Tokens {
				t.Errorf("rank %d evaluation %d: loss %v over %d tokens, one process %v over %d", r, i+1, g.Loss, g.Tokens, w.Loss, w.Tokens)
			}
		}
	}
	t.Logf("eval loss %v before, %v after (one process %v, %v)", evals[0][0].Loss, evals[0][1].Loss, before.Loss, after.Loss)
	got, err := adapter.MergeTensorParallel(shards)
	if err != nil {
		t.Fatal(err)
	}
	worst := adapterDiff(got, wantAd)
	t.Logf("merged adapter within %.3g of the one-process adapter", worst)
	if worst > 1e-5 {
		t.Errorf("merged adapter differs from the one-process adapter by %.3g", worst)
	}
}

// heldOut is held-out data for evaluations: 7 counting sequences of
// vocab ids from other starts, one label ignored.
func heldOut(vocab int) *train.Dataset {
	eval := countingData(7, vocab)
	eval.Path = "held-out"
	for i := range eval.Examples {
		for j := range eval.Examples[i].InputIDs {
			eval.Examples[i].InputIDs[j] = (eval.Examples[i].InputIDs[j] + 5) % int64(vocab)
			eval.Examples[i].Labels[j] = eval.Examples[i].InputIDs[j]
		}
	}
	eval.Examples[0].Labels[2] = train.IgnoreIndex
	return eval
}
