package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/mpi"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train"
	"github.com/peftonnx/peftonnx/train/tensorparallel"
)

// This file is the train command with --tensor-parallel-degree N above
// 1: the world's ranks form groups of N consecutive ranks, each of which
// holds the model sharded among its ranks (tensorparallel.Trainer), and
// the groups train by data parallelism; rank 0 gathers its group's shards
// and writes the whole adapter.

// tensorParallelPlan is what a model needs to be trained sharded: the
// LLaMA config its metadata records, and the adapter it carries.
type tensorParallelPlan struct {
	cfg  models.LlamaConfig
	lora *adapter.Adapter
}

// planTensorParallel checks that the adapted model m, read from path, can
// be sharded among degree ranks, or says in one line why not: "cannot
// shard: PATH: REASON".
func planTensorParallel(path string, m *graph.Model, degree int) (tensorParallelPlan, error) {
	fail := func(format string, args ...any) (tensorParallelPlan, error) {
		return tensorParallelPlan{}, fmt.Errorf("train: --tensor-parallel-degree %d: cannot shard: %s: %s", degree, path, fmt.Sprintf(format, args...))
	}
	cfg, err := models.LlamaConfigOf(m)
	if err != nil {
		return fail("%v (tensor parallelism shards the LLaMA-style decoders that peftonnx builds)", err)
	}
	// A prefix takes the place of the KV cache that its model has: the
	// rest of the model is sharded as without one.
	_, perr := rewrite.PrefixSiteOf(m)
	check := cfg
	check.NoCache = check.NoCache || perr == nil
	if err := check.CheckTensorParallel(degree); err != nil {
		return fail("%v", err)
	}
	lora, err := rewrite.Extract(m)
	if err != nil {
		return fail("%v", err)
	}
	if _, err := adapter.SplitTensorParallel(lora, degree); err != nil {
		return fail("%v", err)
	}
	return tensorParallelPlan{cfg: cfg, lora: lora}, nil
}

// checkTensorParallelFlags refuses the flags that a tensor-parallel run
// does not honour (yet).
func checkTensorParallelFlags(f *trainFlags) error {
	for _, c := range []struct {
		set  bool
		flag string
	}{
		{f.merged != "", "--merged"},
		{f.recomputeProducts != train.ProductsAuto, "--recompute-products"},
		{f.recomputeLayers, "--recompute-layers"},
		{f.output != "", "--output"},
		{train.HalfPolicy(f.half) != train.Upcast, "--half keep"},
	} {
		if c.set {
			return fmt.Errorf("train: --tensor-parallel-degree %d: %s is not supported with tensor parallelism", f.tpDegree, c.flag)
		}
	}
	switch f.loss {
	case "auto", "", "causal", "causal_lm", "clm":
	default:
		return fmt.Errorf("train: --tensor-parallel-degree %d: --loss %s: tensor parallelism trains the causal LM loss only", f.tpDegree, f.loss)
	}
	return nil
}

// tensorParallelGroups returns this rank's tensor-parallel group (the
// degree consecutive ranks of the world it belongs to) and, with more
// than one group, its data-parallel group (the ranks of the other groups
// that hold the same share); the world's size must be a multiple of
// degree.
func tensorParallelGroups(world *mpi.Comm, degree int) (tp, dp *mpi.Comm, err error) {
	p := world.Size()
	if p%degree != 0 {
		if p == 1 {
			return nil, nil, fmt.Errorf("train: --tensor-parallel-degree %d needs %d ranks or a multiple (data parallel × tensor parallel), this run has 1: start it with mpirun -np %d (a build with MPI)", degree, degree, degree)
		}
		return nil, nil, fmt.Errorf("train: --tensor-parallel-degree %d does not divide the %d ranks: want -np a multiple of %d (data parallel × tensor parallel)", degree, p, degree)
	}
	r := world.Rank()
	if tp, err = world.Split(r/degree, r); err != nil {
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	if p == degree {
		return tp, nil, nil
	}
	if dp, err = world.Split(r%degree, r); err != nil {
		tp.Free()
		return nil, nil, fmt.Errorf("train: %w", err)
	}
	return tp, dp, nil
}

// trainTensorParallel runs the train command with --tensor-parallel-degree
// above 1 on one of the ranks.
func trainTensorParallel(cx *context, modelPath string, f *trainFlags, opts train.Options, ranks trainRanks) error {
	cx = &context{cmd: cx.cmd, stdout: ranks.output(cx.stdout), stderr: cx.stderr}
	degree := f.tpDegree
	if err := checkTensorParallelFlags(f); err != nil {
		return err
	}
	m, sum, err := loadTrainable(modelPath)
	if err != nil {
		return err
	}
	defer m.Close()
	plan, err := planTensorParallel(modelPath, m, degree)
	if err != nil {
		return err
	}
	if !f.mergeTP && plan.lora.Prefix != nil {
		return fmt.Errorf("train: --merge-tensor-parallel=false: %s carries a prefix, whose table PaddleNLP's shard files do not hold here: leave the adapter merged", modelPath)
	}
	tp, dp, err := tensorParallelGroups(ranks.world, degree)
	if err != nil {
		return err
	}
	defer tp.Free()
	var dpGroup train.Collective
	if dp != nil {
		defer dp.Free()
		dpGroup = dp
	}
	data, log, release, err := prepareTrainRun(modelPath, m, f, &opts, ranks)
	if err != nil {
		return err
	}
	defer release()
	defer log.abort()
	// The trainer of each rank feeds the pieces of its share; the
	// Collective of data parallelism is dpGroup, not the world.
	opts.Collective = nil
	if opts.LoRAPlusScale == 0 && plan.lora.LoRA != nil {
		// As train.Trainer does: the scale that the model's config records.
		opts.LoRAPlusScale = plan.lora.LoRA.LoRAPlusScale
	}
	tr, err := tensorparallel.NewWithDataParallel(plan.cfg, m, plan.lora, data, tp, dpGroup, opts)
	if err != nil {
		return err
	}
	defer tr.Close()
	if f.resume {
		// checkTrainOutputs found a checkpoint in --out on rank 0, which
		// reads it and sends it to every rank.
		if _, err := tr.Resume(f.out); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	startStep := tr.Step()
	fmt.Fprintf(cx.stdout, "%s\n", sum)
	fmt.Fprintf(cx.stdout, "task: causal LM loss on logits, %d steps; tensor parallel: %d ranks × %d groups (data parallel)\n", tr.TotalSteps(), degree, ranks.world.Size()/degree)
	if f.resume {
		fmt.Fprintf(cx.stdout, "resumed at step %d of %d from %s\n", startStep, tr.TotalSteps(), filepath.Join(f.out, fmt.Sprintf("checkpoint-%d", startStep)))
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stop)
	progress := newTrainProgress(ranks.output(cx.stderr))
	// The log is the trainer's history (a resumed run's starts with its
	// checkpoint's), written as it grows.
	logged := 0
	writeLog := func() error {
		if log.path == "" {
			return nil
		}
		for h := tr.History(); logged < len(h); logged++ {
			b, err := json.Marshal(h[logged])
			if err == nil {
				_, err = log.Write(append(b, '\n'))
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := writeLog(); err != nil {
		return err
	}
	// checkpoint writes one on every rank's call (rank 0 writes it), and
	// returns its path.
	checkpoint := func() (string, error) {
		p, err := tr.SaveCheckpoint(f.out)
		if err != nil {
			return "", fmt.Errorf("train: %w", err)
		}
		return p, nil
	}
	start, fed, ran := time.Now(), 0, 0
	for tr.Step() < tr.TotalSteps() {
		r, err := tr.TrainStep()
		if err != nil {
			return err
		}
		ran++
		fed += r.InputTokens
		progress.update(r)
		last := r.Step == tr.TotalSteps()
		if opts.Eval != nil && (last || (opts.EvalEvery > 0 && r.Step%opts.EvalEvery == 0)) {
			if _, err := tr.Evaluate(opts.Eval); err != nil {
				return err
			}
		}
		if err := writeLog(); err != nil {
			return err
		}
		if !last && f.checkpointEvery > 0 && r.Step%f.checkpointEvery == 0 {
			if _, err := checkpoint(); err != nil {
				return err
			}
		}
		// Every rank stops after the same step when any was signalled,
		// or when --stop-after is reached, with a checkpoint.
		serr := stopTogether(ranks.world, stop)
		if serr != nil && !errors.Is(serr, errStopped) {
			return serr
		}
		stopAfter := !last && f.stopAfter > 0 && ran >= f.stopAfter
		if serr == nil && !stopAfter {
			continue
		}
		progress.done()
		cp, err := checkpoint()
		if err != nil {
			return err
		}
		// The log of a stopped run is the start of the resumed run's.
		if err := log.commit(); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("train: interrupted at step %d of %d; checkpoint %s; continue with --resume", r.Step, tr.TotalSteps(), cp)
		}
		fmt.Fprintf(cx.stdout, "stopped after %d steps at step %d of %d; checkpoint %s; continue with --resume\n", ran, r.Step, tr.TotalSteps(), cp)
		return nil
	}
	progress.done()
	elapsed := time.Since(start)
	// As one process, the run ends with a checkpoint.
	if _, err := checkpoint(); err != nil {
		return err
	}
	// The groups hold the same adapter: the first one's ranks gather it.
	if ranks.world.Rank() >= degree {
		return nil
	}
	shards, err := gatherShards(tp, tr.Adapter())
	if err != nil {
		return err
	}
	if !ranks.leader() {
		return nil
	}
	whole, err := adapter.MergeTensorParallel(shards)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	// The adapter keeps the config the model carries, as one process's.
	if plan.lora.LoRA != nil {
		cfg := *plan.lora.LoRA
		whole.LoRA = &cfg
	} else {
		cfg := *plan.lora.Prefix
		whole.Prefix = &cfg
	}
	if err := log.commit(); err != nil {
		return err
	}
	var files string
	if f.mergeTP {
		if _, files, err = saveAdapterDir(f.out, whole, f.format); err != nil {
			return err
		}
	} else {
		// PaddleNLP's files without merge_tensor_parallel: the shards
		// that split whole again, bit for bit those the ranks hold,
		// written all or none.
		if err := adapter.SavePaddleShards(f.out, whole, degree); err != nil {
			return fmt.Errorf("train: %w", err)
		}
		files = fmt.Sprintf("%s, %s … %s", adapter.PaddleLoRAConfigFile, adapter.PaddleShardFile(0), adapter.PaddleShardFile(degree-1))
	}
	if err := trainWriteLossPlot(filepath.Join(f.out, "loss.png"), tr.History()); err != nil {
		return err
	}
	printTrainSummary(cx, tr.History(), tr.Step(), startStep, ran, fed, elapsed, f, files)
	fmt.Fprintf(cx.stdout, "tensor parallel: %d ranks × batch %d, %d values all-reduced per step on rank 0\n", ranks.world.Size(), f.batch, tr.AllReducedValues())
	return nil
}

// errStopped is what stopTogether returns once a rank was signalled.
var errStopped = errors.New("stopped")

// stopTogether tells the ranks of world whether any of them received a
// signal on stop, and returns errStopped on every rank if one did.
func stopTogether(world *mpi.Comm, stop <-chan os.Signal) error {
	flag := []float64{0}
	select {
	case <-stop:
		flag[0] = 1
	default:
	}
	if err := world.AllReduceSumFloat64(flag); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if flag[0] > 0 {
		return errStopped
	}
	return nil
}

// gatherShards returns every rank's shard of the adapter, in rank order,
// on every rank of tp: shard is this rank's. The ranks hold the same
// modules, whose factors have the same shapes on every rank, or prefix
// tables of the same shape (a share of the KV heads each).
func gatherShards(tp *mpi.Comm, shard *adapter.Adapter) ([]*adapter.Adapter, error) {
	n := tp.Size()
	gather := func(t *adapter.Tensor) ([]*adapter.Tensor, error) {
		all := make([]float32, n*len(t.Data))
		if err := tp.AllGatherFloat32(t.Data, all); err != nil {
			return nil, fmt.Errorf("train: gather the adapter: %w", err)
		}
		out := make([]*adapter.Tensor, n)
		for k := range out {
			out[k] = &adapter.Tensor{DType: t.DType, Shape: t.Shape, Data: all[k*len(t.Data) : (k+1)*len(t.Data)]}
		}
		return out, nil
	}
	shards := make([]*adapter.Adapter, n)
	if shard.Prefix != nil {
		prompts, err := gather(shard.Prompt)
		if err != nil {
			return nil, err
		}
		for k := range shards {
			shards[k] = adapter.NewPrefix(*shard.Prefix)
			shards[k].Prompt = prompts[k]
		}
		return shards, nil
	}
	for k := range shards {
		shards[k] = adapter.NewLoRA(*shard.LoRA)
	}
	for _, mod := range shard.Modules() {
		w := shard.Weights[mod]
		as, err := gather(w.A)
		if err != nil {
			return nil, err
		}
		bs, err := gather(w.B)
		if err != nil {
			return nil, err
		}
		for k, s := range shards {
			s.Weights[mod] = adapter.LoRAWeights{A: as[k], B: bs[k]}
		}
	}
	return shards, nil
}
