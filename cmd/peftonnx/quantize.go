package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
)

func init() {
	register(&command{
		name:    "quantize",
		args:    "MODEL -o OUT [--bits 4] [--block-size 32] [--symmetric] [--accuracy-level N] [--embeddings] [--target RE]... [--modules NAMES]",
		summary: "round a model's linear layers to int4 in blocks, into ONNX Runtime's MatMulNBits layout",
		detail: `
Each linear layer (a MatMul or Gemm whose weight is a 2-D float
initializer; see peftonnx inspect) becomes a com.microsoft MatMulNBits node,
its weight rounded to nearest in blocks of --block-size input features
(a power of two, at least 16): packed codes [N, k_blocks, block/2] for 4
bits, a scale per block, and with zero points unless --symmetric. Names
follow ONNX Runtime's quantizer, which the onnxruntime-genai model builder
runs: "/model/layers.0/attn/q_proj/MatMul" becomes ".../MatMul_Q4", its
weight W becomes W_Q4, W_scales and W_zero_points.

--symmetric stores no zero points: the largest element of a block sets its
scale and every block has the zero point 8 (2^(bits-1)), as ONNX Runtime's
quantizer does. Otherwise a block's minimum and maximum (with 0) set its
scale and zero point. --bits 2 and 8 pack the same way. --accuracy-level
4 lets ONNX Runtime quantize the activations to int8 too (faster, less
exact); 0 leaves the attribute unset.

--embeddings also quantizes the embeddings (a Gather of a 2-D float
table) to com.microsoft GatherBlockQuantized, as the onnxruntime-genai
model builder ships int4 embeddings: each row rounded in blocks of
--block-size values (4 or 8 bits; the hidden size a multiple of the
block), data [vocab, hidden·bits/8]. A table that lm_head shares is then
gone, lm_head keeping its own packed copy. --target does not choose
embeddings.

With --target, only the layers whose module or node name a regex matches
in full are quantized (".*proj" is the usual form); the rest stay float.
--modules q_proj,v_proj selects by name suffix, as HF PEFT's
target_modules, and --modules all-linear every layer but the output head.
Layers that cannot be quantized (a Gemm with transA, a bfloat16 layer) are
listed and left float.

quantize prints each layer's round-to-nearest error: the largest change of
a weight, max|ΔW|; the relative Frobenius error of the dequantized weight,
‖ΔW‖/‖W‖; and the relative error of the layer's output on a random
standard normal input, ‖Δy‖/‖y‖. The total line gives them over all
layers. OUT keeps its data in an external file (OUT.data) when MODEL does
or when it passes 2 GiB; it is written to a temporary file and renamed,
and MODEL is never changed.`,
		run: runQuantize,
	})
}

func runQuantize(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the quantized model to `OUT` (required)")
	bits := fs.Int("bits", 4, "bits per weight: `B` = 4, or 2 or 8")
	blockSize := fs.Int("block-size", 32, "input features per scale: `N`, a power of two ≥ 16")
	symmetric := fs.Bool("symmetric", false, "store no zero points (every block's zero point is 2^(bits-1))")
	level := fs.Int("accuracy-level", 0, "MatMulNBits accuracy_level `N`: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8")
	embeddings := fs.Bool("embeddings", false, "also quantize embeddings (Gather of a float table) to GatherBlockQuantized")
	tf := addTargetFlags(fs, "quantize only")
	model, err := cx.parseOne(args, "MODEL", "-o OUT")
	if err != nil {
		return err
	}
	switch {
	case !quant.SupportedBits(*bits):
		return cx.usagef("--bits must be 2, 4 or 8 (the widths MatMulNBits runs), got %d", *bits)
	case !quant.ValidBlockSize(*blockSize):
		return cx.usagef("--block-size must be a power of two of at least 16, got %d", *blockSize)
	case *level < 0 || *level > quant.MaxAccuracyLevel:
		return cx.usagef("--accuracy-level must be 0 to %d, got %d", quant.MaxAccuracyLevel, *level)
	}
	e, err := loadForEdit(model, *out)
	if err != nil {
		return err
	}
	defer e.Close()
	rep, err := quantize.Model(e.m, quantize.Options{
		Bits: *bits, BlockSize: *blockSize, Symmetric: *symmetric, AccuracyLevel: *level, Targets: tf.patterns(),
		Embeddings: *embeddings,
	})
	if err != nil {
		return err
	}
	if err := e.save(); err != nil {
		return err
	}
	if err := writeQuantizeReport(cx.stdout, rep); err != nil {
		return err
	}
	gathers := ""
	if len(rep.Embeddings) > 0 {
		gathers = fmt.Sprintf(", %d GatherBlockQuantized", len(rep.Embeddings))
	}
	_, err = fmt.Fprintf(cx.stdout, "wrote %s: %d nodes, %d MatMulNBits%s\n", *out, len(e.m.Graph().Node), countMatMulNBits(e.m), gathers)
	return err
}

// writeQuantizeReport prints the layers quantized and their errors.
func writeQuantizeReport(w io.Writer, rep *quantize.Report) error {
	o := rep.Options
	form := "asymmetric (a zero point per block)"
	if o.Symmetric {
		form = "symmetric (no zero points)"
	}
	level := ""
	if o.AccuracyLevel != 0 {
		level = fmt.Sprintf(", accuracy level %d", o.AccuracyLevel)
	}
	fmt.Fprintf(w, "quantized %d of %d linear layers to %d bits in blocks of %d, %s%s:\n",
		len(rep.Layers), rep.Linears, o.Bits, o.BlockSize, form, level)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  module\tK×N\tmax|ΔW|\t‖ΔW‖/‖W‖\t‖Δy‖/‖y‖\tnode\n")
	for _, l := range rep.Layers {
		node := l.NewNode
		if node == "" {
			node = "(unnamed)"
		}
		if l.Shared {
			node += " (shares " + l.Tensors.B + ")"
		}
		fmt.Fprintf(tw, "  %s\t%d×%d\t%.4g\t%.4g\t%.4g\t%s\n", l.Module, l.K, l.N, l.MaxAbsError, l.RelError, l.OutputRelError, node)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range rep.Embeddings {
		fmt.Fprintf(w, "embedding %s (%d×%d) → %s: RTN error max|ΔE| %.4g, ‖ΔE‖/‖E‖ %.4g\n", e.Module, e.Vocab, e.Dim, e.NewNode, e.MaxAbsError, e.RelError)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", s.Module, s.Reason)
	}
	fmt.Fprintf(w, "RTN error over all quantized weights: max|ΔW| %.4g, ‖ΔW‖/‖W‖ %.4g; layer outputs on a random input: ‖Δy‖/‖y‖ %.4g\n",
		rep.MaxAbsError, rep.RelError, rep.OutputRelError)
	ratio := float64(rep.FloatBytes) / float64(max(rep.PackedBytes, 1))
	_, err := fmt.Fprintf(w, "weights: %s float → %s packed (%.1f× smaller)\n", formatBytes(rep.FloatBytes), formatBytes(rep.PackedBytes), ratio)
	return err
}

// countMatMulNBits counts m's MatMulNBits nodes.
func countMatMulNBits(m *graph.Model) int {
	n := 0
	for _, node := range m.Graph().Node {
		if quant.IsNode(node) {
			n++
		}
	}
	return n
}

// formatBytes writes a size in B, KiB, MiB or GiB.
func formatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	v, u := float64(n), 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", v, units[u])
}
