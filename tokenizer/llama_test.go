package tokenizer

import (
	"os"
	"path/filepath"
	"testing"
)

// llamaPath is the tokenizer of the tiny Llama in ../shared/models.
var llamaPath = filepath.FromSlash("../../shared/models/tiny-llama-genai-fp16/tokenizer.json")

// loadLlama loads the shared Llama tokenizer, or skips the test when the
// shared models are not there.
func loadLlama(t testing.TB) *Tokenizer {
	t.Helper()
	if _, err := os.Stat(llamaPath); err != nil {
		t.Skipf("no shared Llama tokenizer: %v", err)
	}
	tok, err := Load(llamaPath)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
