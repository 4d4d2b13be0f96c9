package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// SideResult is what one side measured in one comparison.
type SideResult struct {
	// StepMS holds the timed steps in order; MedianMS their median.
	StepMS   []float64 `json:"step_ms"`
	MedianMS float64   `json:"median_ms"`
	// CPUMS holds the CPU time (user + system, all threads) of the timed
	// steps, and MedianCPUMS its median: the work done, whatever else the
	// machine ran meanwhile (thread pools that spin count, though).
	CPUMS       []float64 `json:"cpu_ms"`
	MedianCPUMS float64   `json:"median_cpu_ms"`
	// Spread is (p75 − p25)/median of the step times.
	Spread float64 `json:"spread"`
	// Values are the losses (or logits) of every step, warmup included.
	Values []float64 `json:"values"`
	// SetupS is the time from start to ready: loading, injecting,
	// building the gradient graph, opening the session.
	SetupS float64 `json:"setup_s"`
	// PeakRSSMB is the process's peak resident set over its whole life;
	// RSSMB the resident set after the last step.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	RSSMB     float64 `json:"rss_mb"`
	// TokensPerS is batch·seq / median step time.
	TokensPerS float64 `json:"tokens_per_s"`
	// Info is the worker's "ready" line: versions, threads.
	Info map[string]any `json:"info"`
}

// Comparison is one configuration run on both sides, interleaved.
type Comparison struct {
	Name   string `json:"name"`
	Mode   string `json:"mode"`
	Size   string `json:"size"`
	Params int64  `json:"params"`
	Batch  int    `json:"batch"`
	Seq    int    `json:"seq"`
	Warmup int    `json:"warmup"`
	Steps  int    `json:"steps"`

	// Load is the machine's one-minute load average before and after
	// the timed steps: others' work on a shared machine shows here.
	Load [2]float64 `json:"load"`

	Peft  SideResult `json:"peftonnx"`
	Torch SideResult `json:"pytorch"`
	// TimeRatio is peftonnx's median step time over PyTorch's, and
	// MemRatio its peak RSS over PyTorch's: below 1 peftonnx is ahead.
	TimeRatio float64 `json:"time_ratio"`
	MemRatio  float64 `json:"mem_ratio"`
	// Failed says why the comparison has no figures: a worker died,
	// for one, when the machine ran out of memory.
	Failed string `json:"failed,omitempty"`
	// Sequential reports that the sides ran one after the other, not
	// interleaved, because both would not fit in memory at once.
	Sequential bool `json:"sequential,omitempty"`

	// WorkGFLOP is the matrix-product work of one step (stepWork), and
	// WorkParts the same by part, in GFLOP.
	WorkGFLOP float64            `json:"work_gflop,omitempty"`
	WorkParts map[string]float64 `json:"work_parts,omitempty"`
	// SGEMM is the machine's matrix-product rate, measured between the
	// timed steps, and each side's achieved fraction of it.
	SGEMM *SGEMMResult `json:"sgemm,omitempty"`
}

// SGEMMResult is the yardstick of one comparison: ONNX Runtime's float32
// matrix-product rate, measured by the SGEMM worker after every timed
// step, and the rate each side achieved on the row's work.
type SGEMMResult struct {
	// Samples are the reference rates (the best of sgemmRuns runs of a
	// 1024×2048 by 2048×2048 product), one per timed step, in GFLOP/s;
	// GFLOPS is their median.
	Samples []float64 `json:"samples"`
	GFLOPS  float64   `json:"gflops"`
	// Shapes is the median rate of each weight shape of the model ("KxN",
	// at the step's rows, at most maxShapeRows), in GFLOP/s.
	Shapes map[string]float64 `json:"shapes"`
	// PeftGFLOPS and TorchGFLOPS are the work over each side's median step
	// time; PeftFraction and TorchFraction the same over GFLOPS.
	PeftGFLOPS    float64 `json:"peftonnx_gflops"`
	TorchGFLOPS   float64 `json:"pytorch_gflops"`
	PeftFraction  float64 `json:"peftonnx_fraction"`
	TorchFraction float64 `json:"pytorch_fraction"`
	// ShapeLimitMS is how long the work would take with every linear
	// product at its own shape's rate and the rest at the reference rate;
	// PeftShapeFraction is that over peftonnx's median step time.
	ShapeLimitMS      float64 `json:"shape_limit_ms,omitempty"`
	PeftShapeFraction float64 `json:"peftonnx_shape_fraction,omitempty"`

	shapeSamples map[string][]float64 // per shape, one per sample, until finish
}

// add records one sample: the reference rate and the rate of each shape.
func (r *SGEMMResult) add(ref float64, shapes map[string]float64) {
	r.Samples = append(r.Samples, ref)
	if r.shapeSamples == nil {
		r.shapeSamples = map[string][]float64{}
	}
	for k, v := range shapes {
		r.shapeSamples[k] = append(r.shapeSamples[k], v)
	}
}

// addReply records a reply of the SGEMM worker.
func (r *SGEMMResult) addReply(reply map[string]any) {
	shapes := map[string]float64{}
	m, _ := reply["shapes"].(map[string]any)
	for k, v := range m {
		shapes[k] = num(v)
	}
	r.add(num(reply["value"]), shapes)
}

// finish takes the medians and sets each side against them; work is the
// row's, and c holds the sides' median step times.
func (r *SGEMMResult) finish(work []gemm, c *Comparison) {
	r.GFLOPS = median(r.Samples)
	r.Shapes = map[string]float64{}
	for k, v := range r.shapeSamples {
		r.Shapes[k] = median(v)
	}
	f := totalFlops(work) / 1e9
	if c.Peft.MedianMS > 0 {
		r.PeftGFLOPS = f / (c.Peft.MedianMS / 1e3)
	}
	if c.Torch.MedianMS > 0 {
		r.TorchGFLOPS = f / (c.Torch.MedianMS / 1e3)
	}
	if r.GFLOPS > 0 {
		r.PeftFraction, r.TorchFraction = r.PeftGFLOPS/r.GFLOPS, r.TorchGFLOPS/r.GFLOPS
	}
	if sec, ok := shapeLimit(work, r.GFLOPS, r.Shapes); ok && c.Peft.MedianMS > 0 {
		r.ShapeLimitMS = sec * 1e3
		r.PeftShapeFraction = r.ShapeLimitMS / c.Peft.MedianMS
	}
}

// compare runs p.mode on the export folder dir on both sides: it starts
// each side's worker (one after the other, so that neither's setup slows
// the other's), runs warmup untimed steps and then steps timed steps,
// alternating A B A B … one step at a time, so that a slow patch on a
// noisy machine hits both sides alike, and takes medians. With
// sequential, for points where both workers would not fit in memory at
// once, each side runs alone in turn instead, and the ratio loses the
// protection of interleaving.
func (e env) compare(dir string, p point) (*Comparison, error) {
	name, mode, batch, warmup, steps, sequential := p.name, p.mode, p.runBatch, p.warmup, p.steps, p.sequential
	spec, err := readSpec(dir)
	if err != nil {
		return nil, err
	}
	batch = spec.rows(batch)
	c := &Comparison{Name: name, Mode: mode, Size: spec.Size, Params: spec.Model.Params, Batch: batch, Seq: spec.Seq,
		Warmup: warmup, Steps: steps, Sequential: sequential}
	how := "interleaved"
	if sequential {
		how = "one side after the other"
	}
	logf("%s: %s, %s model, batch %d, seq %d: %d warmup + %d timed steps per side, %s", name, mode, spec.Size, batch, spec.Seq, warmup, steps, how)
	ws := make([]*worker, 2)
	sides := []side{sidePeft, sideTorch}
	defer func() {
		for _, w := range ws {
			if w != nil {
				w.stop()
			}
		}
	}()
	died := func(s side, err error) (*Comparison, error) {
		if !errors.Is(err, errDied) {
			return nil, err
		}
		c.Failed = fmt.Sprintf("failed: %s %v", s, err)
		logf("%s: %s", name, c.Failed)
		return c, nil
	}
	// The SGEMM worker measures the machine's rate after every timed
	// step of each side, so that the fraction of it holds on a machine
	// whose speed drifts.
	work := stepWork(spec, mode, batch)
	c.WorkGFLOP, c.WorkParts = totalFlops(work)/1e9, map[string]float64{}
	for k, v := range partFlops(work) {
		c.WorkParts[k] = v / 1e9
	}
	c.SGEMM = &SGEMMResult{}
	yard, err := e.start(sidePeft, dir, modeSGEMM, batch)
	if err != nil {
		return nil, fmt.Errorf("peftbench: %s: the SGEMM worker: %w", name, err)
	}
	defer yard.stop()
	res := []*SideResult{&c.Peft, &c.Torch}
	groups := [][]int{{0, 1}}
	if sequential {
		groups = [][]int{{0}, {1}}
	}
	tokens := float64(batch * spec.Seq)
	for gi, g := range groups {
		for _, i := range g {
			if ws[i], err = e.start(sides[i], dir, mode, batch); err != nil {
				return died(sides[i], err)
			}
			res[i].Info = ws[i].Ready
			res[i].SetupS = num(ws[i].Ready["setup_s"])
		}
		for k := range warmup + steps {
			if k == warmup && gi == 0 {
				c.Load[0] = loadAvg()
			}
			for _, i := range g {
				ms, cpu, v, err := ws[i].step()
				if err != nil {
					return died(sides[i], err)
				}
				res[i].Values = append(res[i].Values, v)
				if k >= warmup {
					res[i].StepMS = append(res[i].StepMS, ms)
					res[i].CPUMS = append(res[i].CPUMS, cpu)
				}
			}
			if k >= warmup {
				reply, err := yard.call("step")
				if err != nil {
					return nil, fmt.Errorf("peftbench: %s: the SGEMM worker: %w", name, err)
				}
				c.SGEMM.addReply(reply)
			}
		}
		for _, i := range g {
			st, err := ws[i].call("stats")
			if err != nil {
				return died(sides[i], err)
			}
			ws[i].stop()
			ws[i] = nil
			r := res[i]
			r.PeakRSSMB, r.RSSMB = num(st["peak_rss_mb"]), num(st["rss_mb"])
			r.MedianMS = median(r.StepMS)
			r.MedianCPUMS = median(r.CPUMS)
			if r.MedianMS > 0 {
				r.Spread = (quantile(r.StepMS, 0.75) - quantile(r.StepMS, 0.25)) / r.MedianMS
				r.TokensPerS = tokens / (r.MedianMS / 1e3)
			}
		}
	}
	c.Load[1] = loadAvg()
	c.SGEMM.finish(work, c)
	c.TimeRatio = c.Peft.MedianMS / c.Torch.MedianMS
	c.MemRatio = c.Peft.PeakRSSMB / c.Torch.PeakRSSMB
	logf("%s: peftonnx %.1f ms (CPU %.0f ms), %.0f MiB; pytorch %.1f ms (CPU %.0f ms), %.0f MiB; time ×%.2f, memory ×%.2f; load %.1f→%.1f",
		name, c.Peft.MedianMS, c.Peft.MedianCPUMS, c.Peft.PeakRSSMB, c.Torch.MedianMS, c.Torch.MedianCPUMS, c.Torch.PeakRSSMB, c.TimeRatio, c.MemRatio, c.Load[0], c.Load[1])
	logf("%s: %.1f GFLOP a step; SGEMM %.0f GFLOP/s (median of %d); peftonnx %.0f GFLOP/s (%.0f%% of SGEMM, %.0f%% of the limit at the model's shapes), pytorch %.0f GFLOP/s (%.0f%%)",
		name, c.WorkGFLOP, c.SGEMM.GFLOPS, len(c.SGEMM.Samples), c.SGEMM.PeftGFLOPS, 100*c.SGEMM.PeftFraction, 100*c.SGEMM.PeftShapeFraction, c.SGEMM.TorchGFLOPS, 100*c.SGEMM.TorchFraction)
	if len(c.Peft.Values) > 0 && (mode == modeTrainLoRA || mode == modeTrainLoRALowMem || mode == modeTrainFull) {
		if d := relDiff(c.Peft.Values[0], c.Torch.Values[0]); d > 1e-4 {
			return c, fmt.Errorf("peftbench: %s: the sides disagree at step 1: %v against %v (relative %.2g)", name, c.Peft.Values[0], c.Torch.Values[0], d)
		}
	}
	return c, nil
}

// median returns the median of v, or 0 for no values.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// quantile returns the q-quantile of v by linear interpolation, or 0 for
// no values.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
}

// relDiff returns |a-b| / max(|a|, |b|), and 0 when both are 0.
func relDiff(a, b float64) float64 {
	d := math.Abs(a - b)
	if d == 0 {
		return 0
	}
	return d / math.Max(math.Abs(a), math.Abs(b))
}
