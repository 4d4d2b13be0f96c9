package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDoRACLI runs DoRA through the commands on the real GPT-2 export
// (Gemm layers with bias): inject --dora, merge, export-adapter to an HF
// PEFT directory with the magnitudes, apply and merge --adapter from it,
// and the refusals of the .onnx_adapter and PaddleNLP layouts.
func TestDoRACLI(t *testing.T) {
	needORT(t)
	c := loraCase{model: "gpt2-past-torch16", inject: []string{"--target", `.*\.c_proj`, "--target", ".*c_attn", "--r", "2", "--alpha", "4", "--dora"}}
	base, trained := trainedModel(t, c)
	dir := t.TempDir()
	feeds := modelFeeds(t, c.model)
	want := runModel(t, trained, feeds)
	if d, err := maxDiff(want, runModel(t, base, feeds)); err != nil || d < 1e-3 {
		t.Fatalf("the trained model computes what the base does (difference %.3g, %v): the test would prove nothing", d, err)
	}
	merged := filepath.Join(dir, "merged.onnx")
	runOK(t, "merge", trained, "-o", merged)
	wantSame(t, "merged vs trained", runModel(t, merged, feeds), want, 1e-4)
	if got, want := len(loadModel(t, merged).Graph().Node), len(loadModel(t, base).Graph().Node); got != want {
		t.Errorf("merged model has %d nodes, want the base's %d", got, want)
	}

	ad := filepath.Join(dir, "adapter")
	runOK(t, "export-adapter", trained, "--out", ad)
	cfg, err := os.ReadFile(filepath.Join(ad, "adapter_config.json"))
	if err != nil || !strings.Contains(string(cfg), `"use_dora": true`) {
		t.Errorf("adapter_config.json: want use_dora true, got %s (%v)", cfg, err)
	}
	applied := filepath.Join(dir, "applied.onnx")
	runOK(t, "apply", base, "--adapter", ad, "-o", applied)
	wantSame(t, "applied vs trained", runModel(t, applied, feeds), want, 1e-5)
	fromAdapter := filepath.Join(dir, "merged-from-adapter.onnx")
	runOK(t, "merge", base, "--adapter", ad, "-o", fromAdapter)
	wantSame(t, "merge --adapter vs trained", runModel(t, fromAdapter, feeds), want, 1e-4)

	onnxOut := filepath.Join(dir, "a.onnx_adapter")
	stdout, errOut, code := cli(t, "export-adapter", trained, "--out", onnxOut)
	wantError(t, "DoRA to .onnx_adapter", stdout, errOut, code, 1, "cannot hold a DoRA adapter")
	paddleOut := filepath.Join(dir, "paddle")
	stdout, errOut, code = cli(t, "export-adapter", trained, "--out", paddleOut, "--format", "paddle")
	wantError(t, "DoRA to PaddleNLP", stdout, errOut, code, 1, "PaddleNLP has no DoRA")
	for _, p := range []string{onnxOut, paddleOut} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("a failed export left %s behind", p)
		}
	}
}

// TestInitPiSSACLI injects with --init pissa and olora into the real GPT-2
// export: the injected model computes what the base does, and after
// "training" the exported (converted) adapter applied to the original base
// computes what the trained model does.
func TestInitPiSSACLI(t *testing.T) {
	needORT(t)
	for _, init := range []string{"pissa", "olora"} {
		t.Run(init, func(t *testing.T) {
			c := loraCase{model: "gpt2-past-torch16", inject: []string{"--target", `.*\.c_proj`, "--r", "2", "--alpha", "4", "--init", init}}
			base := sharedModel(t, c.model)
			dir := t.TempDir()
			feeds := modelFeeds(t, c.model)
			fresh := filepath.Join(dir, "fresh.onnx")
			runOK(t, append([]string{"inject", base, "-o", fresh}, c.inject...)...)
			wantSame(t, "fresh vs base", runModel(t, fresh, feeds), runModel(t, base, feeds), 1e-4)
			_, trained := trainedModel(t, c)
			want := runModel(t, trained, feeds)
			ad := filepath.Join(dir, "adapter")
			runOK(t, "export-adapter", trained, "--out", ad)
			applied := filepath.Join(dir, "applied.onnx")
			runOK(t, "apply", base, "--adapter", ad, "-o", applied)
			wantSame(t, "converted adapter applied to the base vs trained", runModel(t, applied, feeds), want, 1e-4)
		})
	}
}
