package main

import (
	"path/filepath"
	"testing"
)

// TestGeneratePrefixedGenAI generates from the real onnxruntime-genai
// export after prefix tuning, with a prompt of several tokens. Its mask
// is built for several new tokens only on an empty past, and a prefix is
// a past: injection widens it (rewrite's WidenedMasks), so the prompt runs
// in one pass.
func TestGeneratePrefixedGenAI(t *testing.T) {
	model, tok := tinyLlama(t)
	prefixed := filepath.Join(t.TempDir(), "model.onnx")
	if _, stderr, code := cli(t, "prefix", model, "-o", prefixed, "--tokens", "4"); code != 0 {
		t.Fatalf("prefix: exit %d: %s", code, stderr)
	}
	out, prompt, generated := generate(t, prefixed, "--tokenizer", tok, "--prompt", "Once upon a time", "--max-new-tokens", "6", "--ignore-eos")
	if prompt == "1" || generated != "6" {
		t.Fatalf("got a prompt of %s tokens and %s generated, want several and 6", prompt, generated)
	}
	again, _, _ := generate(t, prefixed, "--tokenizer", tok, "--prompt", "Once upon a time", "--max-new-tokens", "6", "--ignore-eos")
	if out != again {
		t.Errorf("two greedy runs differ: %q and %q", out, again)
	}
}
