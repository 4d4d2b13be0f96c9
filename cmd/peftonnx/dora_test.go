package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
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

// TestDoRALayerKindsCLI runs DoRA on ConvLM's embedding, Conv1d and Conv2d
// through the commands: inject --dora, train to an HF PEFT directory
// (use_dora, the convolutions' magnitudes [1, out, 1…]), apply, merge,
// merge --adapter and unmerge all compute what run --adapter does.
func TestDoRALayerKindsCLI(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	conv := saveBuilt(t, dir, "convlm.onnx", func() (*graph.Model, error) { return models.ConvLM(models.ConvLMTiny()) })
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", conv, "-o", adapted, "--target", "model.embed_tokens", "--target", "model.conv.d", "--r", "2", "--dora")
	var lines []string
	for i := range 8 {
		lines = append(lines, fmt.Sprintf(`{"input_ids":[%d,%d,%d,%d,%d,%d]}`, i, i+1, i+2, i+3, i+4, i+5))
	}
	data := filepath.Join(dir, "data.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hf := filepath.Join(dir, "hf")
	runOK(t, "train", adapted, "--data", data, "--out", hf, "--steps", "8", "--lr", "5e-2", "--batch", "4", "--loss", "causal")
	cfg, err := os.ReadFile(filepath.Join(hf, "adapter_config.json"))
	if err != nil || !strings.Contains(string(cfg), `"use_dora": true`) {
		t.Errorf("adapter_config.json: want use_dora true, got %s (%v)", cfg, err)
	}
	tensors, _, err := adapter.ReadSafetensors(filepath.Join(hf, adapter.HFWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	for key, shape := range map[string][]int64{"model.embed_tokens": {8}, "model.conv1d": {1, 8, 1}, "model.conv2d": {1, 8, 1, 1}} {
		if tn := tensors["base_model.model."+key+".lora_magnitude_vector.weight"]; tn == nil || !slices.Equal(tn.Shape, shape) {
			t.Errorf("%s's magnitude in the HF file: %v, want shape %v", key, tn, shape)
		}
	}
	applied := filepath.Join(dir, "applied.onnx")
	runOK(t, "apply", conv, "--adapter", hf, "-o", applied)
	merged := filepath.Join(dir, "merged.onnx")
	runOK(t, "merge", applied, "-o", merged)
	direct := filepath.Join(dir, "direct.onnx")
	runOK(t, "merge", conv, "--adapter", hf, "-o", direct)
	unmerged := filepath.Join(dir, "unmerged.onnx")
	runOK(t, "unmerge", merged, "--adapter", hf, "-o", unmerged)

	ids := writeNpy(t, dir, "ids.npy", []int64{1, 6}, []int64{3, 1, 4, 1, 5, 9})
	logits := func(args ...string) map[string][]float32 {
		return map[string][]float32{"logits": runLogits(t, dir, ids, args...)}
	}
	want := logits(conv, "--adapter", hf)
	if d, err := maxDiff(want, logits(conv)); err != nil || !(d >= 1e-4) {
		t.Fatalf("the trained adapter changes the logits by only %g (%v)", d, err)
	}
	for _, path := range []string{applied, merged, direct, unmerged} {
		wantSame(t, filepath.Base(path)+" vs run --adapter", logits(path), want, 1e-4)
	}
}
