package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trainedModel injects c into its base model and gives every B random
// values, standing in for training: it returns the base model's path and
// the trained model's, in a temporary folder.
func trainedModel(t *testing.T, c loraCase) (base, trained string) {
	t.Helper()
	base = sharedModel(t, c.model)
	dir := t.TempDir()
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, append([]string{"inject", base, "-o", adapted}, c.inject...)...)
	trained = filepath.Join(dir, "trained.onnx")
	setRandomB(t, adapted, trained, 5)
	return base, trained
}

// TestApplyRoundTrip exports the adapter of a trained model in both
// formats and applies each to the base model: the result computes what the
// trained model does.
func TestApplyRoundTrip(t *testing.T) {
	needORT(t)
	for _, c := range loraCases {
		t.Run(c.name, func(t *testing.T) {
			base, trained := trainedModel(t, c)
			dir := t.TempDir()
			feeds := modelFeeds(t, c.model)
			want := runModel(t, trained, feeds)
			if d, err := maxDiff(want, runModel(t, base, feeds)); err != nil || d < 10*c.tol {
				t.Fatalf("the trained model computes what the base does (difference %.3g, %v): the test would prove nothing", d, err)
			}

			formats := []struct{ name, out string }{
				{"hf", filepath.Join(dir, "adapter")},
				{"onnx_adapter", filepath.Join(dir, "adapter.onnx_adapter")},
			}
			for _, f := range formats {
				args := []string{"export-adapter", trained, "--out", f.out}
				if f.name == "onnx_adapter" && c.fused {
					stdout, errOut, code := cli(t, args...)
					wantError(t, "fused projection to .onnx_adapter", stdout, errOut, code, 1, "fused projection", "--format hf")
					if _, err := os.Stat(f.out); err == nil {
						t.Errorf("a failed export left %s behind", f.out)
					}
					continue
				}
				runOK(t, args...)
				applied := filepath.Join(dir, "applied-"+f.name+".onnx")
				stdout := runOK(t, "apply", base, "--adapter", f.out, "-o", applied)
				if first, _, _ := strings.Cut(stdout, "\n"); !summaryLine.MatchString(first) {
					t.Errorf("%s: got first line %q, want the trainable-parameters summary", f.name, first)
				}
				wantSame(t, "applied from "+f.name+" vs trained", runModel(t, applied, feeds), want, c.tol)
			}
		})
	}
}

// TestApplyErrors checks adapters that do not fit, and that a failed apply
// writes nothing.
func TestApplyErrors(t *testing.T) {
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	distilbert := sharedModel(t, "distilbert-optimum")
	genai := filepath.Join(sharedModels, "onnx-adapter-gpt2", "two_lora_params.onnx_adapter")
	if _, err := os.Stat(genai); err != nil {
		t.Skipf("shared adapter is not here: %v", err)
	}
	dir := t.TempDir()
	llamaAdapter := filepath.Join(dir, "llama-adapter")
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", llama, "-o", adapted, "--target", ".*q_proj")
	runOK(t, "export-adapter", adapted, "--out", llamaAdapter)
	out := filepath.Join(dir, "out", "applied.onnx")

	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"adapter for another model", []string{llama, "--adapter", genai, "-o", out}, 1,
			[]string{genai, `adapter module "model.layers.0.attn.qkv_proj" matches no linear layer`, llama, "model.layers.0.attn.q_proj"}},
		{"adapter shapes do not fit", []string{distilbert, "--adapter", llamaAdapter, "-o", out}, 1,
			[]string{llamaAdapter, "model.layers.0.attn.q_proj"}},
		{"adapter on an adapted model", []string{adapted, "--adapter", llamaAdapter, "-o", out}, 1,
			[]string{adapted, "already carries LoRA branches"}},
		{"missing adapter", []string{llama, "--adapter", filepath.Join(dir, "nothing"), "-o", out}, 1, []string{"nothing", "no such file"}},
		{"no adapter", []string{llama, "-o", out}, 2, []string{"--adapter is required"}},
		{"no -o", []string{llama, "--adapter", llamaAdapter}, 2, []string{"-o OUT is required"}},
		{"two models", []string{llama, llama, "--adapter", llamaAdapter, "-o", out}, 2, []string{"want one BASE model, got 2"}},
	} {
		stdout, errOut, code := cli(t, append([]string{"apply"}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, test.code, test.parts...)
		if _, err := os.Stat(filepath.Dir(out)); err == nil {
			t.Errorf("%s: left %q behind", test.reason, listDir(t, filepath.Dir(out)))
		}
	}
}

// TestApplyAsInputs applies an adapter with --as-inputs: fed nothing, the
// result is the base model.
func TestApplyAsInputs(t *testing.T) {
	needORT(t)
	c := loraCases[3]
	base, trained := trainedModel(t, c)
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter")
	runOK(t, "export-adapter", trained, "--out", ad)
	out := filepath.Join(dir, "inputs.onnx")
	stdout := runOK(t, "apply", base, "--adapter", ad, "-o", out, "--as-inputs")
	if !strings.Contains(stdout, "graph inputs") {
		t.Errorf("got stdout %q, want a note on graph inputs", stdout)
	}
	feeds := modelFeeds(t, c.model)
	wantSame(t, "as inputs, fed nothing, vs base", runModel(t, out, feeds), runModel(t, base, feeds), c.tol)
}
