package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Report is everything "peftbench all" measured.
type Report struct {
	Date     string  `json:"date"`
	Duration string  `json:"duration"`
	Command  string  `json:"command"`
	Machine  Machine `json:"machine"`

	Parity    []*ParityResult `json:"parity"`
	Train     []*Comparison   `json:"train"`
	Forward   []*Comparison   `json:"forward"`
	ScaleSeq  []*Comparison   `json:"scale_seq"`
	ScaleSize []*Comparison   `json:"scale_size"`
	Serve     *ServeResult    `json:"serve,omitempty"`
}

// fillVersions takes the library versions from the workers' ready lines.
func (r *Report) fillVersions() {
	for _, c := range r.all() {
		if v := str(c.Peft.Info["ort"]); v != "" {
			r.Machine.ORT = v
		}
		if v := str(c.Torch.Info["torch"]); v != "" {
			r.Machine.Torch = v
		}
		if v := str(c.Torch.Info["blas"]); v != "" {
			r.Machine.BLAS = v
		}
	}
}

func (r *Report) all() []*Comparison {
	var out []*Comparison
	for _, l := range [][]*Comparison{r.Train, r.Forward, r.ScaleSeq, r.ScaleSize} {
		out = append(out, l...)
	}
	return out
}

// write saves results.json and results.md in dir.
func (r *Report) write(dir string) error {
	if err := writeJSON(filepath.Join(dir, "results.json"), r); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "results.md"), []byte(r.Markdown()))
}

// Markdown renders the report as the README's results section.
func (r *Report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Measured %s on %s (%d cores, %d GiB, %s, Linux %s), %d threads per side.\n",
		r.Date, m.CPU, m.Cores, m.MemGiB, m.OS, m.Kernel, m.Threads)
	fmt.Fprintf(&b, "peftonnx on ONNX Runtime %s (%s); PyTorch %s (BLAS: %s). Run time %s.\n\n",
		m.ORT, m.Go, m.Torch, m.BLAS, r.Duration)
	if len(r.Parity) > 0 {
		b.WriteString("**Parity** (same weights, batch and adapter init; tolerances 1e-5 relative on the step-1 loss, 1e-4 relative (‖Δ‖/‖w‖) on every adapter factor after 20 AdamW steps):\n\n")
		b.WriteString(parityTable(r.Parity))
		b.WriteString("\n")
	}
	if len(r.Train) > 0 {
		b.WriteString("**Training**, one optimizer step (forward, backward, clip, AdamW); medians of interleaved steps:\n\n")
		b.WriteString(comparisonTable(r.Train))
		b.WriteString("\n")
		if note := qloraMemoryNote(r.Train); note != "" {
			b.WriteString(note + "\n")
		}
	}
	if len(r.Forward) > 0 {
		b.WriteString("**Inference**, one forward pass to logits:\n\n")
		b.WriteString(comparisonTable(r.Forward))
		b.WriteString("\n")
	}
	if len(r.ScaleSeq)+len(r.ScaleSize) > 0 {
		b.WriteString("**Scaling** of the LoRA step (plot: `bench/results/scaling.png`):\n\n")
		b.WriteString(comparisonTable(append(append([]*Comparison(nil), r.ScaleSeq...), r.ScaleSize...)))
		b.WriteString("\n")
	}
	if r.Serve != nil {
		b.WriteString(serveTable(r.Serve))
		b.WriteString("\n")
	}
	if y := yardstickTable(r.all()); strings.Count(y, "\n") > 2 {
		b.WriteString("**The machine's limit**: ONNX Runtime's float32 matrix-product rate (SGEMM), measured after every timed step of each row; the work is the row's matrix products per step (forward linears, attention, adapters and, for training, the gradients it needs):\n\n")
		b.WriteString(y)
		b.WriteString("\n")
	}
	b.WriteString("Ratios are peftonnx / PyTorch: below 1.00 peftonnx is faster or smaller. \"of SGEMM\" is a side's GFLOP per step over its median step time, as a fraction of the median SGEMM rate measured in the same minutes.\n")
	return b.String()
}

// comparisonTable renders comparisons as a Markdown table.
func comparisonTable(cs []*Comparison) string {
	var b strings.Builder
	tableHead(&b, "lllrrrrrrrrrrrr", "what", "model", "batch×seq", "peftonnx ms", "PyTorch ms", "time ratio", "peftonnx tok/s", "PyTorch tok/s",
		"peftonnx peak RSS", "PyTorch peak RSS", "memory ratio", "GFLOP", "SGEMM GFLOP/s", "peftonnx of SGEMM", "PyTorch of SGEMM")
	for _, c := range cs {
		if c.Failed != "" {
			fmt.Fprintf(&b, "| %s | %s (%s) | %d×%d | %s | | | | | | | | | | | |\n", c.Name, c.Size, human(c.Params), c.Batch, c.Seq, c.Failed)
			continue
		}
		name := c.Name
		if c.Sequential {
			name += " (sides one after the other)"
		}
		fmt.Fprintf(&b, "| %s | %s (%s) | %d×%d | %.1f | %.1f | **%.2f×** | %.0f | %.0f | %.0f MiB | %.0f MiB | **%.2f×** | %s |\n",
			name, c.Size, human(c.Params), c.Batch, c.Seq, c.Peft.MedianMS, c.Torch.MedianMS, c.TimeRatio,
			c.Peft.TokensPerS, c.Torch.TokensPerS, c.Peft.PeakRSSMB, c.Torch.PeakRSSMB, c.MemRatio, yardstickCells(c))
	}
	return b.String()
}

// yardstickCells renders the work and SGEMM columns of c: empty for a
// comparison measured before the benchmark had them.
func yardstickCells(c *Comparison) string {
	y := c.SGEMM
	if y == nil || y.GFLOPS <= 0 {
		return " | | | "
	}
	return fmt.Sprintf("%.1f | %.0f | **%.0f%%** | %.0f%%", c.WorkGFLOP, y.GFLOPS, 100*y.PeftFraction, 100*y.TorchFraction)
}

// yardstickTable renders, for the comparisons that have it, the SGEMM
// samples' range, the rate at each of the model's weight shapes, and
// peftonnx's fraction of the time those rates allow.
func yardstickTable(cs []*Comparison) string {
	var b strings.Builder
	tableHead(&b, "llrrlrr", "what", "model", "SGEMM GFLOP/s (min–max)", "GFLOP", "rate at the model's shapes, GFLOP/s", "limit at those rates ms", "peftonnx of it")
	seen := map[*Comparison]bool{}
	for _, c := range cs {
		y := c.SGEMM
		if c.Failed != "" || y == nil || y.GFLOPS <= 0 || seen[c] {
			continue
		}
		seen[c] = true
		var shapes []string
		for _, k := range slices.Sorted(maps.Keys(y.Shapes)) {
			shapes = append(shapes, fmt.Sprintf("%s: %.0f", k, y.Shapes[k]))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f (%.0f–%.0f) | %.1f | %s | %.0f | %.0f%% |\n", c.Name, c.Size, y.GFLOPS, slices.Min(y.Samples), slices.Max(y.Samples),
			c.WorkGFLOP, strings.Join(shapes, ", "), y.ShapeLimitMS, 100*y.PeftShapeFraction)
	}
	return b.String()
}

// parityTable renders parity results as a Markdown table.
func parityTable(rs []*ParityResult) string {
	var b strings.Builder
	tableHead(&b, "lllrrrrrl", "model", "batch×seq", "B init", "step-1 loss peftonnx", "step-1 loss PyTorch", "rel. diff",
		"adapters after N steps: ‖Δ‖/‖w‖", "max\\|Δ\\|/max\\|w\\|", "result")
	for _, r := range rs {
		init := "zero (HF)"
		if r.RandomB {
			init = "random"
		}
		fmt.Fprintf(&b, "| %s | %d×%d | %s | %.8f | %.8f | %.1e | %.1e (N=%d) | %.1e | %s |\n",
			r.Size, r.Batch, r.Seq, init, r.PeftLoss[0], r.TorchLoss[0], r.Loss1Rel, r.AdapterL2Rel, r.Steps, r.AdapterRel, passWord(r.Pass))
	}
	for _, r := range rs {
		if d := r.Diagnosis; d != nil {
			init := "B at zero"
			if r.RandomB {
				init = "random B"
			}
			fmt.Fprintf(&b, "\n%s, %s, diagnosis against PyTorch in float64: %s.\n", r.Size, init, d.Verdict)
		}
	}
	return b.String()
}

// tableHead writes the head of a Markdown table with columns cols, each
// aligned as align says, one letter a column: l left, r right.
func tableHead(b *strings.Builder, align string, cols ...string) {
	b.WriteString("| " + strings.Join(cols, " | ") + " |\n|")
	for _, a := range align {
		if a == 'r' {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
}

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

// writeFile writes b to path through a temporary file, creating the folder.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("peftbench: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("peftbench: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("peftbench: %w", err)
	}
	return nil
}
