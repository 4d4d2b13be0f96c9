package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
	"github.com/peftonnx/peftonnx/train"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// The worker modes, shared with torch_llama.py.
const (
	modeTrainLoRA = "train-lora"
	// modeTrainLoRALowMem is the LoRA step with ONNX Runtime's
	// pre-packing off (peftonnx train --low-memory); PyTorch runs its one
	// LoRA step for it.
	modeTrainLoRALowMem = "train-lora-lowmem"
	modeTrainFull       = "train-full"
	modeForwardBase     = "forward-base"
	modeForwardLoRA     = "forward-lora"
	modeForwardMerged   = "forward-merged"
	// modeTrainDoRA is the LoRA step with DoRA (use_dora) on the same
	// layers, peftonnx's side only (peftbench memory -dora).
	modeTrainDoRA = "train-dora"
)

var workerModes = []string{modeTrainLoRA, modeTrainLoRALowMem, modeTrainFull, modeForwardBase, modeForwardLoRA, modeForwardMerged,
	modeTrainQLoRA, modeForwardInt4, modeForwardInt4LoRA, modeForwardInt4Merged, modeSGEMM, modeTrainDoRA, modeTrainQDoRA}

// isDoRAMode reports whether mode trains DoRA.
func isDoRAMode(mode string) bool { return mode == modeTrainDoRA || mode == modeTrainQDoRA }

// goRun is the peftonnx side of one benchmark configuration: an ONNX
// Runtime session over the exported model (adapted, merged, or with its
// training graph), bound once to its inputs, and for training the
// parameters, AdamW and the schedule, all as a peftonnx user would set
// them up: graph.Load (external data mapped, not read), rewrite.InjectLoRA,
// train.CausalLMLoss, autodiff.Build, a runtime.Session whose frozen
// weights stay external data (train.NewSession), a runtime.Binding, and per step
// train.ClipGradNorm, train.Schedule and train.AdamW.
//
// Environment variables change the setup for profiling, never in the
// reported runs:
//
//	PEFTBENCH_ORT_PROFILE=prefix   ONNX Runtime's trace (peftbench profile sets it)
//	PEFTBENCH_ORT_CONFIG="k=v;…"   ONNX Runtime session config entries
//	PEFTBENCH_STATIC=1             make batch and sequence dims static
//	PEFTBENCH_DUMP_GRAPH=path      write the graph the session runs
//	PEFTBENCH_LOSS_CHUNKS=n        the LM head and loss in n chunks (0: whole; default train's)
//	PEFTBENCH_RECOMPUTE=layers     checkpoint whole layers (autodiff.WithRecomputeLayers)
//	PEFTBENCH_RECOMPUTE=products   recompute the frozen products (autodiff.WithRecomputeProducts)
//	PEFTBENCH_RECOMPUTE=kept       keep every frozen product (unset: train's default, int4 ones recomputed)
//	PEFTBENCH_ORT_OPTIMIZED=path   write the graph ONNX Runtime runs, after its optimizations
//	PEFTBENCH_ARENA=off            ONNX Runtime's CPU memory arena off (runtime.WithMemoryArena)
//	PEFTBENCH_LORA_TARGETS=a,b,…   LoRA on these modules, such as q_proj,v_proj,lm_head (default q_proj,v_proj;
//	                               its own export folder; peftonnx's side only: the PyTorch worker wraps layer projections)
type goRun struct {
	spec  Spec
	mode  string
	batch int

	sess    *session.Session
	bind    *rt.Binding
	ids     *rt.Tensor // bound input_ids; a step copies its batch in
	labels  *rt.Tensor // bound labels (training)
	batches [][]int64
	out     string // the output a forward pass reads

	params []*train.Param
	grads  []string
	loss   string
	opt    *train.AdamW
	sched  *train.Schedule
	step   int
}

// openGoRun prepares mode on the export folder dir with threads intra-op
// threads; batch > 0 runs the first batch rows of each batch only.
func openGoRun(dir, mode string, batch, threads int) (*goRun, error) {
	spec, err := readSpec(dir)
	if err != nil {
		return nil, err
	}
	batch = spec.rows(batch)
	r := &goRun{spec: spec, mode: mode, batch: batch}
	for _, b := range spec.tokens() {
		r.batches = append(r.batches, b[:batch*spec.Seq])
	}
	m, err := graph.Load(filepath.Join(spec.ModelDir, modelFile(mode)))
	if err != nil {
		return nil, err
	}
	defer m.Close()

	var lora []string
	if mode != modeForwardBase && mode != modeTrainFull && mode != modeForwardInt4 {
		if lora, err = injectExported(m, spec, isDoRAMode(mode)); err != nil {
			return nil, err
		}
	}
	switch mode {
	case modeForwardMerged:
		if err := rewrite.Merge(m); err != nil {
			return nil, err
		}
	case modeForwardInt4Merged: // int4 again, the base's nodes
		if _, err := rewrite.MergeWith(m, rewrite.Requantize()); err != nil {
			return nil, err
		}
	}
	if os.Getenv("PEFTBENCH_STATIC") != "" {
		fixShapes(m, batch, spec.Seq)
	}
	g := m
	switch mode {
	case modeTrainLoRA, modeTrainLoRALowMem, modeTrainFull, modeTrainQLoRA, modeTrainDoRA, modeTrainQDoRA:
		loss, err := train.CausalLMLoss(m, "logits", train.WithLossChunks(lossChunks()))
		if err != nil {
			return nil, err
		}
		// DoRA's norms are detached, as train.Trainer marks them.
		detached, err := rewrite.DetachedValues(m)
		if err != nil {
			return nil, err
		}
		autodiff.MarkStopGradient(m, detached...)
		names := lora
		if mode == modeTrainFull {
			names = floatInitializers(m)
		}
		for _, name := range names {
			v, err := m.Float32s(m.Initializer(name))
			if err != nil {
				return nil, err
			}
			r.params = append(r.params, train.NewParam(name, m.Initializer(name).Dims, v))
			r.grads = append(r.grads, autodiff.GradName(name))
		}
		// Unset, as train.Trainer's default (train.ProductsAuto): an int4
		// base's products recomputed, float ones kept.
		recompute := os.Getenv("PEFTBENCH_RECOMPUTE")
		if g, err = autodiff.Build(m, loss, names,
			autodiff.WithRecomputeInt4Products(recompute == ""),
			autodiff.WithRecomputeProducts(recompute == "products"),
			autodiff.WithRecomputeLayers(recompute == "layers")); err != nil {
			return nil, err
		}
		r.loss = loss
		if r.opt, err = train.NewAdamW(train.DefaultAdamW()); err != nil {
			return nil, err
		}
		if r.sched, err = train.NewSchedule("linear", spec.Train.LR, spec.Train.Warmup, spec.Train.Steps); err != nil {
			return nil, err
		}
	default:
		r.out = "logits"
	}
	if r.sess, err = openSession(g, threads, mode != modeTrainLoRALowMem); err != nil {
		return nil, err
	}
	// The session has read what it needs; the training graph's share of
	// the mapped weight file goes now (m's goes with the deferred Close),
	// so that pages read while copying the parameters out do not stay
	// resident.
	if g != m {
		g.Close()
	}
	g, m = nil, nil
	if err := r.bindInputs(); err != nil {
		r.Close()
		return nil, err
	}
	// The graphs and their serialized bytes are garbage now; give the
	// memory back so that the resident set shows the steady state.
	runtime.GC()
	debug.FreeOSMemory()
	return r, nil
}

// injectExported injects the spec's LoRA (with dora, DoRA on the same
// layers) into m and sets A and B to the exported initial values, which
// the PyTorch side starts from too; DoRA's magnitudes keep their start,
// the weights' column norms. It returns the names of the trained tensors.
func injectExported(m *graph.Model, spec Spec, dora bool) ([]string, error) {
	cfg := loraConfig(spec)
	cfg.UseDoRA = dora
	_, sum, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(loraSeed))
	if err != nil {
		return nil, err
	}
	init, _, err := readSafetensors(filepath.Join(spec.ModelDir, spec.LoRAFile))
	if err != nil {
		return nil, err
	}
	for _, name := range sum.LoRA {
		t, ok := init[name]
		if !ok && dora && strings.HasSuffix(name, ".lora_magnitude_vector.weight") {
			continue
		}
		if !ok {
			return nil, fmt.Errorf("peftbench: %s has no %q", spec.LoRAFile, name)
		}
		if err := graph.SetFloat32s(m.Initializer(name), t.F32); err != nil {
			return nil, err
		}
	}
	return sum.LoRA, nil
}

// floatInitializers returns the names of m's floating-point initializers
// with at least one element: every weight of a model from models.Llama.
func floatInitializers(m *graph.Model) []string {
	var names []string
	for _, t := range m.Graph().Initializer {
		if graph.TypeOf(t).IsFloat() && len(t.Dims) > 0 {
			names = append(names, t.Name)
		}
	}
	return names
}

// openSession opens the session over g as train.Trainer does
// (train.NewSession: the frozen weights stay in the export folder's data
// file, memory patterns off), with threads intra-op threads, pre-packing
// as prepack says, and the profiling settings of the environment.
func openSession(g *graph.Model, threads int, prepack bool) (*session.Session, error) {
	if p := os.Getenv("PEFTBENCH_DUMP_GRAPH"); p != "" {
		b, _, err := g.MarshalReferencing()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
	}
	opts := []rt.Option{rt.WithIntraOpThreads(threads), rt.WithPrepacking(prepack)}
	// For profiling: PEFTBENCH_ORT_PROFILE=prefix writes ONNX Runtime's
	// trace, and PEFTBENCH_ORT_CONFIG="key=value;…" sets session entries.
	if p := os.Getenv("PEFTBENCH_ORT_PROFILE"); p != "" {
		opts = append(opts, rt.WithProfiling(p))
	}
	if p := os.Getenv("PEFTBENCH_ORT_OPTIMIZED"); p != "" {
		opts = append(opts, rt.WithOptimizedModelPath(p))
	}
	if os.Getenv("PEFTBENCH_ARENA") == "off" {
		opts = append(opts, rt.WithMemoryArena(false))
	}
	for _, kv := range strings.Split(os.Getenv("PEFTBENCH_ORT_CONFIG"), ";") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			opts = append(opts, rt.WithConfigEntry(k, v))
		}
	}
	return train.NewSession(g, opts...)
}

// bindInputs creates the input tensors and binds them to the session.
func (r *goRun) bindInputs() error {
	s := r.spec
	shape := []int64{int64(r.batch), int64(s.Seq)}
	n := r.batch * s.Seq
	var err error
	if r.ids, err = rt.NewInt64(shape, slices.Clone(r.batches[0])); err != nil {
		return err
	}
	in := map[string]*rt.Tensor{"input_ids": r.ids}
	if in["attention_mask"], err = rt.NewInt64(shape, s.ones()[:n]); err != nil {
		return err
	}
	if in["position_ids"], err = rt.NewInt64(shape, s.positions()[:n]); err != nil {
		return err
	}
	outs := []string{r.out}
	if r.params != nil {
		if r.labels, err = rt.NewInt64(shape, slices.Clone(r.batches[0])); err != nil {
			return err
		}
		in[train.LabelsInput] = r.labels
		for _, p := range r.params {
			// The tensor shares p.Data: AdamW's in-place updates are what
			// the next run reads.
			if in[p.Name], err = rt.NewFloat32(p.Shape, p.Data); err != nil {
				return err
			}
		}
		outs = append([]string{r.loss}, r.grads...)
	}
	for _, vi := range r.sess.Inputs() {
		if _, ok := in[vi.Name]; !ok && !vi.Optional {
			return fmt.Errorf("peftbench: the session wants input %q, which the benchmark does not feed", vi.Name)
		}
	}
	r.bind, err = r.sess.Bind(in, outs)
	return err
}

// Step runs one training step (forward, backward, clipping, AdamW) or one
// forward pass, on the next batch, and returns its wall time and the loss
// (or one logit, for a forward pass).
func (r *goRun) Step() (time.Duration, float64, error) {
	b := r.batches[r.step%len(r.batches)]
	t0 := time.Now()
	copy(r.ids.Int64(), b)
	if r.params == nil {
		out, err := r.bind.Run()
		if err != nil {
			return 0, 0, err
		}
		r.step++
		// logits[0, -1, 0], as torch_llama.py reports.
		return time.Since(t0), float64(out[r.out].Float32()[(r.spec.Seq-1)*r.spec.Model.VocabSize]), nil
	}
	copy(r.labels.Int64(), b)
	out, err := r.bind.Run()
	if err != nil {
		return 0, 0, err
	}
	loss := float64(out[r.loss].Float32()[0])
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, 0, fmt.Errorf("peftbench: step %d: loss is %v", r.step+1, loss)
	}
	for i, p := range r.params {
		p.Grad = out[r.grads[i]].Float32()
	}
	train.ClipGradNorm(r.params, r.spec.Train.Clip)
	if err := r.opt.Step(r.sched.LR(r.step), r.params); err != nil {
		return 0, 0, err
	}
	r.step++
	return time.Since(t0), loss, nil
}

// Close releases the session; a nil goRun is safe to close.
func (r *goRun) Close() {
	if r != nil && r.sess != nil {
		r.sess.Close()
	}
}

// readSpec reads an export folder's config.json.
func readSpec(dir string) (Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, specFile))
	if err != nil {
		return Spec{}, fmt.Errorf("peftbench: %w", err)
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return Spec{}, fmt.Errorf("peftbench: %s: %w", filepath.Join(dir, specFile), err)
	}
	return s, nil
}

// rows returns the batch rows that a run on the export takes: batch where
// it is in (0, Batch], else the export's Batch.
func (s Spec) rows(batch int) int {
	if batch <= 0 || batch > s.Batch {
		return s.Batch
	}
	return batch
}

// runWorker serves the worker protocol on stdin and stdout: it prepares
// mode, prints a "ready" line, then answers each command line ("step",
// "stats", "quit") with one JSON line. torch_llama.py speaks the same.
// The SGEMM worker (modeSGEMM) answers "step" with the rates it measured.
func runWorker(dir, mode string, batch, threads int) error {
	if !slices.Contains(workerModes, mode) {
		return fmt.Errorf("peftbench: unknown worker mode %q", mode)
	}
	enc := json.NewEncoder(os.Stdout)
	t0 := time.Now()
	var step func() (map[string]any, error)
	ready := map[string]any{"ready": true, "ort": rt.Version(), "threads": threads, "go": runtime.Version()}
	if mode == modeSGEMM {
		s, err := openSGEMM(dir, batch, threads)
		if err != nil {
			return err
		}
		defer s.Close()
		step = func() (map[string]any, error) {
			ref, shapes, err := s.measure()
			return map[string]any{"value": ref, "shapes": shapes}, err
		}
	} else {
		r, err := openGoRun(dir, mode, batch, threads)
		if err != nil {
			return err
		}
		defer r.Close()
		ready["tokens"] = r.batch * r.spec.Seq
		step = func() (map[string]any, error) {
			c0 := cpuTime()
			dt, v, err := r.Step()
			return map[string]any{"ms": float64(dt.Nanoseconds()) / 1e6, "cpu_ms": float64((cpuTime() - c0).Nanoseconds()) / 1e6, "value": v}, err
		}
	}
	ready["setup_s"], ready["rss_mb"], ready["peak_rss_mb"] = time.Since(t0).Seconds(), rssMB(), peakRSSMB()
	enc.Encode(ready)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "step":
			reply, err := step()
			if err != nil {
				enc.Encode(map[string]any{"error": err.Error()})
				return err
			}
			enc.Encode(reply)
		case "stats":
			enc.Encode(map[string]any{"rss_mb": rssMB(), "peak_rss_mb": peakRSSMB()})
		case "quit", "":
			return nil
		default:
			enc.Encode(map[string]any{"error": fmt.Sprintf("unknown command %q", sc.Text())})
		}
	}
	return sc.Err()
}

// runGoParity trains the adapter of the export folder dir for steps steps
// and returns the loss of each step and the final factors.
func runGoParity(dir string, steps, threads int) ([]float64, map[string]stTensor, error) {
	r, err := openGoRun(dir, modeTrainLoRA, 0, threads)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	var losses []float64
	for range steps {
		_, l, err := r.Step()
		if err != nil {
			return nil, nil, err
		}
		losses = append(losses, l)
	}
	out := map[string]stTensor{}
	for _, p := range r.params {
		out[p.Name] = stTensor{Shape: p.Shape, F32: slices.Clone(p.Data)}
	}
	return losses, out, nil
}

// fixShapes makes the batch and sequence dims of m's inputs and outputs
// static.
func fixShapes(m *graph.Model, batch, seq int) {
	for _, vi := range append(slices.Clone(m.Graph().Input), m.Graph().Output...) {
		tt := vi.GetType().GetTensorType()
		if tt == nil || tt.Shape == nil {
			continue
		}
		for _, d := range tt.Shape.Dim {
			switch d.GetDimParam() {
			case "batch_size":
				d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(batch)}
			case "sequence_length", "total_sequence_length":
				d.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(seq)}
			}
		}
	}
}

// runGoGrads writes the loss and the raw adapter gradients (before
// clipping) of step 1 on the export folder dir to out, for diagnosing a
// parity failure op by op.
func runGoGrads(dir, out string, threads int) error {
	r, err := openGoRun(dir, modeTrainLoRA, 0, threads)
	if err != nil {
		return err
	}
	defer r.Close()
	res, err := r.bind.Run()
	if err != nil {
		return err
	}
	t := map[string]stTensor{}
	for i, p := range r.params {
		t[p.Name] = stTensor{Shape: p.Shape, F32: slices.Clone(res[r.grads[i]].Float32())}
	}
	loss := float64(res[r.loss].Float32()[0])
	return writeSafetensors(out, t, map[string]string{"loss": fmt.Sprint(loss)})
}

// lossChunks returns the chunks of the LM head and loss: train's default,
// or PEFTBENCH_LOSS_CHUNKS.
func lossChunks() int {
	if n, err := strconv.Atoi(os.Getenv("PEFTBENCH_LOSS_CHUNKS")); err == nil {
		return n
	}
	return train.DefaultOptions().LossChunks
}
