package train

import (
	"context"
	"fmt"
	"hash/fnv"
)

// Data parallelism: each rank runs its own session on its shard of every
// global batch (Loader.Shard) and accumulates its gradients weighted by
// its shard's share of what the whole step scored, so that the sum over
// the ranks is the gradient one process gets from the global batch. The
// sum is one all-reduce of every gradient per step, before clipping, so
// every rank clips by the same global norm and takes the same optimizer
// step.

// firstBatch returns the first batch this rank's session runs, or would
// run: the first global batch, or of several ranks rank 0's shard of it,
// which is never empty. The feeds are checked and the shapes probed on
// it, at the size of one rank's batch.
func (t *Trainer) firstBatch() Batch {
	if !t.distributed() {
		return t.loader.Batch(0, 0)
	}
	b, _ := t.loader.Shard(0, 0, 0, t.comm.Size())
	return b
}

// shareGradients, on one of several ranks, moves the parameters'
// gradients into one buffer, which sumGradients all-reduces at once.
func (t *Trainer) shareGradients() {
	if !t.distributed() {
		return
	}
	n := 0
	for _, p := range t.params {
		n += len(p.Grad)
	}
	t.gradFlat = make([]float32, n)
	off := 0
	for _, p := range t.params {
		p.Grad = t.gradFlat[off : off+len(p.Grad) : off+len(p.Grad)]
		off += len(p.Grad)
	}
}

// sumGradients sums the gradients and this rank's part of the step's loss
// over the ranks, and returns the step's loss.
func (t *Trainer) sumGradients(loss float64) (float64, error) {
	if err := t.comm.AllReduceSumFloat32(t.gradFlat); err != nil {
		return 0, errorf("data parallel: gradients: %w", err)
	}
	l := []float64{loss}
	if err := t.allReduce64("loss", l); err != nil {
		return 0, err
	}
	return l[0], nil
}

// AllReducedBytes returns how many bytes a training step all-reduces on
// each rank: every gradient (float32), and the loss and the stop flag
// (float64). It is 0 when the trainer trains alone.
func (t *Trainer) AllReducedBytes() int {
	if !t.distributed() {
		return 0
	}
	return 4*len(t.gradFlat) + 8 + 8
}

// stopRequested returns ctx's error when ctx is done. Of several ranks,
// it returns an error on every rank when the context of any is done, so
// that all stop after the same step; on a rank whose own context is not
// done, the error wraps context.Canceled.
func (t *Trainer) stopRequested(ctx context.Context) error {
	err := ctx.Err()
	if !t.distributed() {
		return err
	}
	stop := []float64{0}
	if err != nil {
		stop[0] = 1
	}
	if rerr := t.allReduce64("stop", stop); rerr != nil {
		return rerr
	}
	if stop[0] > 0 && err == nil {
		err = fmt.Errorf("train: %w: another rank was stopped", context.Canceled)
	}
	return err
}

// checkSameRun fails on every rank unless every rank trains the same run:
// the same parameters, data size and options that decide the order of the
// collectives and the lengths of their buffers. Ranks that differ would
// otherwise hang in a collective or sum mismatched gradients. Each rank
// contributes a 20-bit fingerprint f and f²: the sums are n·f and n·f²
// exactly when every rank's f is the same.
func (t *Trainer) checkSameRun() error {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d %d %d %d %d %d %v %v %v %q|", len(t.data.Examples), t.opts.BatchSize, t.opts.GradAccum, t.opts.SeqLen,
		t.total, t.opts.Seed, t.opts.LR, t.opts.Clip, t.opts.PadToSeqLen, t.opts.Task)
	if t.opts.Eval != nil {
		fmt.Fprintf(h, "eval %d|", len(t.opts.Eval.Examples))
	}
	for _, p := range t.params {
		fmt.Fprintf(h, "%s %v|", p.Name, p.Shape)
	}
	f := float64(h.Sum64() & (1<<20 - 1))
	sums := []float64{f, f * f}
	if err := t.allReduce64("check", sums); err != nil {
		return err
	}
	if n := float64(t.comm.Size()); sums[0] != n*f || sums[1] != n*f*f {
		return errorf("data parallel: the %d ranks do not train the same run (their parameters, data sizes or options differ): every rank must get the same model, data and options", t.comm.Size())
	}
	return nil
}
