package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
)

func TestShardsCommand(t *testing.T) {
	dir := t.TempDir()
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	adapted := trainAdaptedModel(t, dir, "adapted.onnx", m, ".*_proj")
	setRandomB(t, adapted, adapted, 5)
	orig := filepath.Join(dir, "orig")
	runOK(t, "export-adapter", adapted, "--out", orig)

	shards, merged := filepath.Join(dir, "shards"), filepath.Join(dir, "merged")
	out := runOK(t, "shards", "split", orig, "--degree", "2", "-o", shards)
	if want := "14 LoRA modules split into 2 tensor-parallel shards"; !bytes.Contains([]byte(out), []byte(want)) {
		t.Errorf("split says %q, want %q", out, want)
	}
	for _, f := range []string{adapter.PaddleLoRAConfigFile, "lora_model_state.tp00.pdparams", "lora_model_state.tp01.pdparams"} {
		if !trainFileExists(filepath.Join(shards, f)) {
			t.Errorf("split wrote no %s", f)
		}
	}
	// Applying the shards as they are fails: merge first.
	o, e, code := cli(t, "apply", adapted, "--adapter", shards, "-o", filepath.Join(dir, "x.onnx"))
	wantError(t, "apply of shards", o, e, code, 1, "tensor_parallel_degree 2", "merge the shards into one adapter first")

	// Merged into an HF PEFT directory: the exported weights, byte for
	// byte (the config goes through PaddleNLP's, which writes
	// lora_plus_scale 0 as the 1 it means).
	runOK(t, "shards", "merge", shards, "-o", merged, "--format", "hf")
	sameFiles(t, orig, merged, adapter.HFWeightsFile)

	// From a PaddleNLP directory and back to one: every file.
	ad, err := adapter.LoadDir(orig)
	if err != nil {
		t.Fatal(err)
	}
	paddle, shards2, merged2 := filepath.Join(dir, "paddle"), filepath.Join(dir, "shards2"), filepath.Join(dir, "merged2")
	if err := adapter.SavePaddleDir(paddle, ad); err != nil {
		t.Fatal(err)
	}
	runOK(t, "shards", "split", paddle, "--degree", "4", "-o", shards2)
	runOK(t, "shards", "merge", shards2, "-o", merged2)
	sameFiles(t, paddle, merged2, adapter.PaddleLoRAConfigFile, adapter.PaddleLoRAWeightsFile)

	o, e, code = cli(t, "shards", "split", orig, "-o", shards)
	wantError(t, "split without --degree", o, e, code, 2, "--degree must be 2 or more")
	o, e, code = cli(t, "shards", "join", orig)
	wantError(t, "unknown verb", o, e, code, 2, "want split or merge")
}

// sameFiles fails t unless each of names is in dirs a and b with the same
// bytes.
func sameFiles(t *testing.T, a, b string, names ...string) {
	t.Helper()
	for _, f := range names {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, err := os.ReadFile(filepath.Join(b, f))
		if err != nil || len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s of %s differs from that of %s (%v)", f, b, a, err)
		}
	}
}
