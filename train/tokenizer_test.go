package train

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/tokenizer"
)

// llamaTokenizer is the tokenizer of the tiny Llama in ../shared/models.
const llamaTokenizer = "../../shared/models/tiny-llama-genai-fp16/tokenizer.json"

// loadLlamaTokenizer loads the shared Llama tokenizer, or skips the test
// when the shared models are not there. Package tokenizer tests the
// tokenizer itself.
func loadLlamaTokenizer(t *testing.T) *Tokenizer {
	t.Helper()
	path := filepath.FromSlash(llamaTokenizer)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no shared Llama tokenizer: %v", err)
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
