package graph_test

import (
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
)

// TestMarshalReferencing serializes a model with external data without
// its weights, and checks that parsing the bytes against the returned
// folder gives back the same model, while Marshal inlines everything.
func TestMarshalReferencing(t *testing.T) {
	path := sharedModel(t, "tiny-llama-genai-fp16")
	m, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b, dir, err := m.MarshalReferencing()
	if err != nil {
		t.Fatal(err)
	}
	wantDir, _ := filepath.Abs(filepath.Dir(path))
	if dir != wantDir {
		t.Errorf("folder: got %q want %q", dir, wantDir)
	}
	inline, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= len(inline)/10 {
		t.Errorf("referencing serialization is %d bytes, inline %d: the weights were copied", len(b), len(inline))
	}
	back, err := graph.Parse(b, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	compareModels(t, m, back)

	// A model with nothing external needs no folder.
	mem, err := graph.Parse(inline, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, dir, err := mem.MarshalReferencing(); err != nil || dir != "" {
		t.Errorf("inline model: folder %q, error %v; want none", dir, err)
	}
}
