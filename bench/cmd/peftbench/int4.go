package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quantize"
)

// The int4 rows: QLoRA (LoRA on the base quantized to int4, ONNX
// Runtime's MatMulNBits, as peftonnx quantize writes it) and the int4
// forward passes. PyTorch runs the float32 counterpart of each: Debian
// packages no bitsandbytes, so PyTorch has no int4 row; the rows set
// peftonnx's int4 against PyTorch's float32, and the report also sets
// the QLoRA step against peftonnx's own float32 LoRA step.
const (
	modeTrainQLoRA        = "train-qlora"
	modeForwardInt4       = "forward-int4"
	modeForwardInt4LoRA   = "forward-int4-lora"
	modeForwardInt4Merged = "forward-int4-merged"
	// modeTrainQDoRA is the QLoRA step with DoRA (use_dora), peftonnx's
	// side only (peftbench memory -int4 -dora).
	modeTrainQDoRA = "train-qlora-dora"
)

// int4File is the int4 model in a model's folder: base.onnx through
// quantize.Model with int4Options, weights in int4File.data;
// int4EmbeddingsFile the same with the token embedding quantized too.
const (
	int4File           = "base-int4.onnx"
	int4EmbeddingsFile = "base-int4-emb.onnx"
)

// int4Options are peftonnx quantize's defaults (4 bits, blocks of 32,
// per-block zero points, every linear layer, lm_head too) with
// accuracy_level 4, which the model builder sets for CPU: ONNX Runtime
// may then quantize the activations to int8 in the forward pass.
var int4Options = quantize.Options{Bits: 4, BlockSize: 32, AccuracyLevel: 4}

// int4EmbeddingsEnv set to 1 (the -int4-embeddings flag sets it, and the
// workers inherit it) has the int4 rows run the model whose token
// embedding is int4 too (GatherBlockQuantized, quantize --embeddings).
// It is off by default: the model builder's int4 export leaves the
// embedding float unless int4_op_types_to_quantize names Gather (its
// default is MatMul alone).
const int4EmbeddingsEnv = "PEFTBENCH_INT4_EMBEDDINGS"

// int4Model returns the int4 model's file name and the options that
// quantize it.
func int4Model() (string, quantize.Options) {
	if os.Getenv(int4EmbeddingsEnv) == "1" {
		o := int4Options
		o.Embeddings = true
		return int4EmbeddingsFile, o
	}
	return int4File, int4Options
}

// isInt4Mode reports whether mode runs the int4 model.
func isInt4Mode(mode string) bool {
	return strings.Contains(mode, "int4") || mode == modeTrainQLoRA || mode == modeTrainQDoRA
}

// torchMode returns the mode the PyTorch worker runs for mode: its one
// LoRA step for the --low-memory and QLoRA steps, and the float32 forward
// pass for an int4 one.
func torchMode(mode string) string {
	switch mode {
	case modeTrainLoRALowMem, modeTrainQLoRA:
		return modeTrainLoRA
	case modeForwardInt4:
		return modeForwardBase
	case modeForwardInt4LoRA:
		return modeForwardLoRA
	case modeForwardInt4Merged:
		return modeForwardMerged
	}
	return mode
}

// modelFile returns the model file a mode's peftonnx worker loads.
func modelFile(mode string) string {
	if isInt4Mode(mode) {
		file, _ := int4Model()
		return file
	}
	return baseFile
}

// exportInt4 writes the int4 model into the model folder mdir unless it
// is there, in the driver, so that no worker's peak memory holds the
// float weights that quantizing reads.
func exportInt4(mdir string) error {
	file, o := int4Model()
	path := filepath.Join(mdir, file)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	m, err := graph.Load(filepath.Join(mdir, baseFile))
	if err != nil {
		return err
	}
	defer m.Close()
	rep, err := quantize.Model(m, o)
	if err != nil {
		return fmt.Errorf("peftbench: quantizing %s: %w", mdir, err)
	}
	logf("quantized %s to int4 (%d layers, %.1f MiB → %.1f MiB; RTN error ‖ΔW‖/‖W‖ %.3g)", mdir, len(rep.Layers),
		float64(rep.FloatBytes)/(1<<20), float64(rep.PackedBytes)/(1<<20), rep.RelError)
	for _, e := range rep.Embeddings {
		logf("quantized embedding %s (%d×%d) to int4: RTN error ‖ΔE‖/‖E‖ %.3g", e.Module, e.Vocab, e.Dim, e.RelError)
	}
	return m.Save(path, graph.SaveOptions{ExternalData: true})
}

// qloraMemoryNote sets the QLoRA step's peak memory against the float32
// LoRA step's, both peftonnx's, where the rows have both; "" otherwise.
func qloraMemoryNote(train []*Comparison) string {
	var lora, qlora *Comparison
	for _, c := range train {
		switch {
		case c.Failed != "":
		case c.Mode == modeTrainLoRA:
			lora = c
		case c.Mode == modeTrainQLoRA:
			qlora = c
		}
	}
	if lora == nil || qlora == nil || lora.Peft.PeakRSSMB == 0 {
		return ""
	}
	return fmt.Sprintf("QLoRA against float32 LoRA, both peftonnx: peak RSS %.0f MiB against %.0f MiB (**%.2f×**), step %.1f ms against %.1f ms (%.2f×). "+
		"PyTorch's column in the QLoRA and int4 rows is its float32 run: Debian has no bitsandbytes, so PyTorch has no int4 row.\n",
		qlora.Peft.PeakRSSMB, lora.Peft.PeakRSSMB, qlora.Peft.PeakRSSMB/lora.Peft.PeakRSSMB, qlora.Peft.MedianMS, lora.Peft.MedianMS, qlora.Peft.MedianMS/lora.Peft.MedianMS)
}

// qloraRow names the QLoRA row.
const qloraRow = "QLoRA training step, int4 base (PyTorch: float32 LoRA)"

// exportFor exports the spec of size, batch, seq and steps under cache
// as exportSpec does, and the int4 model too where mode runs it; it
// returns the run's folder.
func exportFor(cache, size string, batch, seq, steps int, mode string) (string, error) {
	s, err := newSpec(size, batch, seq, steps)
	if err != nil {
		return "", err
	}
	dir, err := export(cache, s)
	if err != nil {
		return "", err
	}
	if isInt4Mode(mode) {
		if err := exportInt4(filepath.Join(cache, s.modelKey())); err != nil {
			return "", err
		}
	}
	return dir, nil
}
