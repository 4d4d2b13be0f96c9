package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/npy"
)

// saveBuilt writes a models/ fixture to dir/name.
func saveBuilt(t *testing.T, dir, name string, build func() (*graph.Model, error)) string {
	t.Helper()
	m, err := build()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := m.Save(path, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

// runLogits runs "run MODEL --input input_ids=IDS [ARGS...]" (args[0] the
// model, ids an .npy file) with its output under dir, and returns the
// logits.
func runLogits(t *testing.T, dir, ids string, args ...string) []float32 {
	t.Helper()
	outDir := filepath.Join(dir, "run"+strconv.Itoa(len(args))+filepath.Base(args[0]))
	runOK(t, append([]string{"run", args[0], "--input", "input_ids=" + ids, "--output-dir", outDir}, args[1:]...)...)
	a, err := npy.ReadFile(filepath.Join(outDir, "logits.npy"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := npy.Values[float32](a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLayerKindsCLI runs the commands on the layer kinds besides linear
// ones: inspect lists ConvLM's embedding and convolutions, inject, export
// (HF PEFT directory), apply and merge take them, inspect names the
// layers inside an If, and merge refuses a QDQ weight unless told
// --dequantize.
func TestLayerKindsCLI(t *testing.T) {
	dir := t.TempDir()
	conv := saveBuilt(t, dir, "convlm.onnx", func() (*graph.Model, error) { return models.ConvLM(models.ConvLMTiny()) })
	out := runOK(t, "inspect", conv)
	for _, want := range []string{"embedding and convolution layers (3):", "model.conv2d", "1×3", "embedding"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect of ConvLM does not show %q:\n%s", want, out)
		}
	}
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", conv, "-o", adapted, "--target", "model.embed_tokens", "--target", "model.conv.d", "--r", "2")
	// A few training steps, so that the adapter changes the logits.
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf(`{"input_ids":[%d,%d,%d,%d,%d,%d]}`, i, i+1, i+2, i+3, i+4, i+5))
	}
	data := filepath.Join(dir, "data.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hf := filepath.Join(dir, "hf")
	if out := runOK(t, "train", adapted, "--data", data, "--out", hf, "--steps", "8", "--lr", "5e-2", "--batch", "4", "--loss", "causal"); !strings.Contains(out, "trained 8 steps") {
		t.Errorf("train output: %s", out)
	}
	runOK(t, "apply", conv, "--adapter", hf, "-o", adapted)
	runOK(t, "apply", conv, "--adapter", hf, "-o", filepath.Join(dir, "applied.onnx"))
	runOK(t, "merge", adapted, "-o", filepath.Join(dir, "merged.onnx"))
	runOK(t, "merge", conv, "--adapter", hf, "-o", filepath.Join(dir, "merged2.onnx"))
	// run with the adapter applied in memory computes what the merged model does.
	ids := writeNpy(t, dir, "ids.npy", []int64{1, 6}, []int64{3, 1, 4, 1, 5, 9})
	logits := func(args ...string) []float32 { t.Helper(); return runLogits(t, dir, ids, args...) }
	withAdapter, merged, plain := logits(conv, "--adapter", hf), logits(filepath.Join(dir, "merged2.onnx")), logits(conv)
	if d := math.Abs(float64(withAdapter[0] - plain[0])); d < 1e-4 {
		t.Fatalf("the trained adapter changes logit 0 by only %g", d)
	}
	for i := range merged {
		if d := math.Abs(float64(withAdapter[i] - merged[i])); d > 1e-4 {
			t.Fatalf("run --adapter and the merged model differ by %g at logit %d", d, i)
		}
	}
	// The same adapter fed to a model whose factors are inputs.
	inputs := filepath.Join(dir, "as-inputs.onnx")
	runOK(t, "inject", conv, "-o", inputs, "--target", "model.embed_tokens", "--target", "model.conv.d", "--as-inputs")
	for i, v := range logits(inputs, "--adapter", hf) {
		if d := math.Abs(float64(v - withAdapter[i])); d > 1e-4 {
			t.Fatalf("run --adapter on the --as-inputs model differs by %g at logit %d", d, i)
		}
	}
	ort := filepath.Join(dir, "convlm.onnx_adapter")
	runOK(t, "export-adapter", adapted, "--out", ort)
	runOK(t, "apply", conv, "--adapter", ort, "-o", filepath.Join(dir, "applied-ort.onnx"))
	for i, v := range logits(filepath.Join(dir, "applied-ort.onnx")) {
		if d := math.Abs(float64(v - withAdapter[i])); d > 1e-4 {
			t.Fatalf("the .onnx_adapter applied differs from the HF adapter by %g at logit %d", d, i)
		}
	}

	nested := saveBuilt(t, dir, "if.onnx", func() (*graph.Model, error) { return models.IfLinear(false, 1) })
	if out := runOK(t, "inspect", nested); !strings.Contains(out, "layers inside subgraphs, which LoRA does not adapt (2):") {
		t.Errorf("inspect of an If model does not name its nested layers:\n%s", out)
	}

	qdq := saveBuilt(t, dir, "qdq.onnx", func() (*graph.Model, error) { return models.QDQLinear(false, 1) })
	qa := filepath.Join(dir, "qdq-adapted.onnx")
	runOK(t, "inject", qdq, "-o", qa, "--target", "fc")
	_, errOut, code := cli(t, "merge", qa, "-o", filepath.Join(dir, "qdq-merged.onnx"))
	if code == 0 || !strings.Contains(errOut, "cannot be exact in int8") || !strings.Contains(errOut, "--dequantize") {
		t.Errorf("merge of a QDQ model: status %d, stderr %q; want a refusal that offers --dequantize", code, errOut)
	}
	runOK(t, "merge", qa, "-o", filepath.Join(dir, "qdq-merged.onnx"), "--dequantize")
}
