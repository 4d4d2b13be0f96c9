package tensorparallel

import (
	"math"
	"testing"
)

// TestTensorParallelDropout trains the tiny run with seeded LoRA dropout
// 0.3 on 2 tensor-parallel ranks and checks the losses and the merged
// adapter against one process (train.Trainer with the same seed), and
// that the dropout changed the run.
func TestTensorParallelDropout(t *testing.T) {
	requireORT(t)
	run := newTinyRunWithDropout(t, 31, 0.3)
	want, wantAd := run.oneProcess(t)
	plain, _, _ := tpSteps(t, newTinyRun(t, 31), 2, "", run.opts.Steps, "")
	if d := math.Abs(plain[len(plain)-1] - want[len(want)-1]); d < 1e-3 {
		t.Fatalf("dropout moved the last loss by %.3g only", d)
	}
	got, gotAd, _ := tpSteps(t, run, 2, "", run.opts.Steps, "")
	for i, w := range want {
		if math.Abs(got[i]-w) > 1e-6*w {
			t.Errorf("step %d: loss %v, one process %v", i+1, got[i], w)
		}
	}
	d := adapterDiff(gotAd, wantAd)
	t.Logf("merged adapter within %.3g of one process's", d)
	if d > 1e-5 {
		t.Errorf("merged adapter differs from one process's by %.3g", d)
	}
}

// TestDataTimesTensorParallelDropout is TestDataTimesTensorParallel with
// seeded LoRA dropout 0.3: each data-parallel rank drops what one process
// drops on its rows of the batch.
func TestDataTimesTensorParallelDropout(t *testing.T) {
	requireORT(t)
	dataTimesTensorParallel(t, newTinyRunWithDropout(t, 31, 0.3))
}
