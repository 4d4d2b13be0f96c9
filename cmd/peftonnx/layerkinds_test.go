package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
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
	hf := filepath.Join(dir, "hf")
	runOK(t, "export-adapter", adapted, "--out", hf)
	runOK(t, "apply", conv, "--adapter", hf, "-o", filepath.Join(dir, "applied.onnx"))
	runOK(t, "merge", adapted, "-o", filepath.Join(dir, "merged.onnx"))
	runOK(t, "merge", conv, "--adapter", hf, "-o", filepath.Join(dir, "merged2.onnx"))
	ort := filepath.Join(dir, "convlm.onnx_adapter")
	runOK(t, "export-adapter", adapted, "--out", ort)
	runOK(t, "apply", conv, "--adapter", ort, "-o", filepath.Join(dir, "applied-ort.onnx"))

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
