package main

import (
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/models"
)

// TestTrainTensorParallelErrors checks that train --tensor-parallel-degree
// refuses, in one line and before --out is made, what it cannot shard or
// run: another kind of model, a LLaMA with a KV cache, a degree that does
// not divide the heads, an unsupported flag, a bad degree, and one
// process without mpirun.
func TestTrainTensorParallelErrors(t *testing.T) {
	dir := t.TempDir()
	gpt2, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	gpt2Path := trainAdaptedModel(t, dir, "gpt2.onnx", gpt2, ".*")
	cached := trainTinyLlama(t, dir)
	c := models.LlamaTiny()
	c.NoCache = true
	llama, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	llamaPath := trainAdaptedModel(t, dir, "llama-tp.onnx", llama, ".*_proj")
	data := trainCountingData(t, dir, "train.jsonl", 4, 6, 32)
	out := filepath.Join(dir, "out")
	tests := []struct {
		reason string
		args   []string
		code   int
		want   []string
	}{
		{"not a LLaMA", []string{gpt2Path, "--tensor-parallel-degree", "2"}, 1, []string{"--tensor-parallel-degree 2: cannot shard: " + gpt2Path + ": ", "LLaMA"}},
		{"KV cache", []string{cached, "--tensor-parallel-degree", "2"}, 1, []string{"cannot shard: " + cached, "KV cache"}},
		{"heads", []string{llamaPath, "--tensor-parallel-degree", "3"}, 1, []string{"cannot shard: " + llamaPath, "degree 3 does not divide"}},
		{"merged", []string{llamaPath, "--tensor-parallel-degree", "2", "--merged", filepath.Join(dir, "merged.onnx")}, 1, []string{"--merged is not supported with tensor parallelism"}},
		{"loss", []string{llamaPath, "--tensor-parallel-degree", "2", "--loss", "token"}, 1, []string{"trains the causal LM loss only"}},
		{"degree 0", []string{llamaPath, "--tensor-parallel-degree", "0"}, 2, []string{"--tensor-parallel-degree must be 1 or more, got 0"}},
		{"one process", []string{llamaPath, "--tensor-parallel-degree", "2"}, 1, []string{"needs 2 ranks or a multiple", "mpirun -np 2"}},
	}
	for _, tt := range tests {
		args := append([]string{"train"}, tt.args...)
		args = append(args, "--data", data, "--out", out, "--steps", "1", "--threads", "1")
		stdout, stderr, code := cli(t, args...)
		wantError(t, tt.reason, stdout, stderr, code, tt.code, tt.want...)
		if trainFileExists(out) {
			t.Errorf("%s: %s was made", tt.reason, out)
		}
	}
}
