package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
)

// TestExportAdapterFormats checks what each format holds: the HF directory
// the config and the factors as they are, the .onnx_adapter file the
// factors with the scaling folded into B.
func TestExportAdapterFormats(t *testing.T) {
	c := loraCases[1] // r 4, alpha 16: scaling 4
	_, trained := trainedModel(t, c)
	want, err := rewrite.ExtractAdapter(loadModel(t, trained))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	hf := filepath.Join(dir, "hf")
	stdout := runOK(t, "export-adapter", trained, "--out", hf)
	if got := tempPaths(stdout, dir); got != "wrote $TMP/hf (HF PEFT directory): 36 LoRA modules, r=4, alpha=16, 2304 params\n" {
		t.Errorf("got stdout %q", got)
	}
	if got := listDir(t, hf); !slices.Equal(got, []string{adapter.HFConfigFile, adapter.HFWeightsFile}) {
		t.Errorf("got files %q in the HF directory", got)
	}
	got, err := adapter.Load(hf)
	if err != nil {
		t.Fatal(err)
	}
	if got.LoRA.R != 4 || got.LoRA.Alpha != 16 || !slices.Equal(got.Modules(), want.Modules()) {
		t.Errorf("HF directory: got r %d, alpha %v, modules %q; want 4, 16, %q", got.LoRA.R, got.LoRA.Alpha, got.Modules(), want.Modules())
	}
	for _, mod := range want.Modules() {
		if !slices.Equal(got.Weights[mod].B.Data, want.Weights[mod].B.Data) || !slices.Equal(got.Weights[mod].A.Data, want.Weights[mod].A.Data) {
			t.Errorf("HF directory: module %s: factors differ from the model's", mod)
		}
	}

	// An explicit --format writes a file whatever its name.
	for _, out := range []string{filepath.Join(dir, "a.onnx_adapter"), filepath.Join(dir, "named-freely.bin")} {
		args := []string{"export-adapter", trained, "--out", out}
		if filepath.Ext(out) != adapter.ONNXAdapterExt {
			args = append(args, "--format", "onnx_adapter")
		}
		runOK(t, args...)
		f, err := adapter.ReadONNXAdapter(out)
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.ToAdapter(nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := got.LoRA.Scaling(); s != 1 {
			t.Errorf("%s: read back with scaling %v, want 1", out, s)
		}
		for _, mod := range want.Modules() {
			wb, gb := want.Weights[mod].B.Data, got.Weights[mod].B.Data
			if len(gb) != len(wb) {
				t.Fatalf("%s: module %s: got %d B values, want %d", out, mod, len(gb), len(wb))
			}
			for i := range wb {
				if math.Abs(float64(gb[i]-4*wb[i])) > 1e-6 {
					t.Fatalf("%s: module %s: B[%d] is %v, want 4·%v", out, mod, i, gb[i], wb[i])
				}
			}
			if !slices.Equal(got.Weights[mod].A.Data, want.Weights[mod].A.Data) {
				t.Errorf("%s: module %s: A differs", out, mod)
			}
		}
	}
}

// TestExportAdapterErrors checks models that hold no adapter and bad
// flags; a failed export writes nothing.
func TestExportAdapterErrors(t *testing.T) {
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	dir := t.TempDir()
	inputs := filepath.Join(dir, "inputs.onnx")
	runOK(t, "inject", llama, "-o", inputs, "--target", ".*q_proj", "--as-inputs")
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", llama, "-o", adapted, "--target", ".*q_proj")
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")

	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"base model", []string{llama, "--out", out}, 1, []string{llama, "carries no LoRA branch"}},
		{"factors are inputs", []string{inputs, "--out", out}, 1, []string{inputs, "graph inputs", "no adapter to extract"}},
		{"bad format", []string{adapted, "--out", out, "--format", "pt"}, 2, []string{`--format must be hf, paddle or onnx_adapter, got "pt"`}},
		{"hf into a file", []string{adapted, "--out", file, "--format", "hf"}, 1, []string{file, "is a file"}},
		{"onnx_adapter into a folder", []string{adapted, "--out", dir, "--format", "onnx_adapter"}, 1, []string{dir, "is a directory"}},
		{"no --out", []string{adapted}, 2, []string{"--out is required"}},
		{"missing model", []string{filepath.Join(dir, "missing.onnx"), "--out", out}, 1, []string{"missing.onnx", "no such file"}},
	} {
		stdout, errOut, code := cli(t, append([]string{"export-adapter"}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, test.code, test.parts...)
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: left %s behind", test.reason, out)
		}
	}
}
