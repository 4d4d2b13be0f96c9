package serve_test

import (
	"testing"

	"github.com/peftonnx/peftonnx/internal/servetest"
	"github.com/peftonnx/peftonnx/models"
)

// fixture is servetest's model and adapters (LoRA4: r=4 on q and v; LoRA8:
// r=8 on k, o and down; Prefix: 3 tokens), with the prompts the tests
// send and the tokens they generate per request.
type fixture struct {
	*servetest.Fixture
	prompts   [][]int64
	newTokens int
}

func newFixture(t testing.TB, cfg models.LlamaConfig) *fixture {
	t.Helper()
	return &fixture{Fixture: servetest.New(t, cfg, ""), newTokens: 8,
		prompts: [][]int64{{1, 5, 9, 3}, {7, 2}, {4, 4, 8, 1, 6, 2, 11}}}
}

// reference returns the greedy tokens of every prompt on the merged model
// of the adapter at path ("" for the base), or on the prefixed model.
func (f *fixture) reference(t testing.TB, path string) [][]int64 {
	t.Helper()
	return f.Reference(t, path, f.prompts, f.newTokens, nil)
}
