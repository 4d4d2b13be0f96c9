package graph_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

func copyFile(t *testing.T, from, to string, limit int) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if limit > 0 && limit < len(b) {
		b = b[:limit]
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadErrors checks that bad input gets an error naming the file and
// the problem.
func TestLoadErrors(t *testing.T) {
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	tests := []struct {
		name  string
		setup func(dir string) string // returns the path to load
		want  []string                // substrings of the error
	}{
		{"missing file", func(dir string) string { return filepath.Join(dir, "nope.onnx") },
			[]string{"nope.onnx", "no such file"}},
		{"empty file", func(dir string) string {
			p := filepath.Join(dir, "empty.onnx")
			os.WriteFile(p, nil, 0o644)
			return p
		}, []string{"empty.onnx", "empty model"}},
		{"garbage", func(dir string) string {
			p := filepath.Join(dir, "garbage.onnx")
			os.WriteFile(p, []byte("this is not a protobuf at all \xff\xff\xff\xff"), 0o644)
			return p
		}, []string{"garbage.onnx", "not an ONNX model"}},
		{"truncated", func(dir string) string {
			p := filepath.Join(dir, "truncated.onnx")
			copyFile(t, sharedModel(t, "distilbert-optimum"), p, 1000)
			return p
		}, []string{"truncated.onnx", "not an ONNX model"}},
		{"missing external data", func(dir string) string {
			p := filepath.Join(dir, "model.onnx")
			copyFile(t, llama, p, 0)
			return p
		}, []string{"model.onnx.data", "missing"}},
		{"short external data", func(dir string) string {
			p := filepath.Join(dir, "model.onnx")
			copyFile(t, llama, p, 0)
			copyFile(t, llama+".data", p+".data", 1000)
			return p
		}, []string{"model.onnx", "external data", "holds 1000 bytes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup(t.TempDir())
			m, err := graph.Load(p)
			if err == nil {
				m.Close()
				t.Fatalf("Load(%s): got no error", p)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "graph: ") || strings.Contains(msg, "\n") {
				t.Errorf("error is not one line prefixed with the package: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

// TestLoadRejectsEscapingLocation refuses external data outside the
// model's folder.
func TestLoadRejectsEscapingLocation(t *testing.T) {
	m := graph.New(nil2(), "")
	w := graph.NewFloat32Tensor("w", dtype.Float32, []int64{4}, []float32{1, 2, 3, 4})
	m.AddInitializer(w)
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1, DataFile: "w.bin"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	b2 := []byte(strings.Replace(string(b), "w.bin", "../xx", 1))
	os.WriteFile(p, b2, 0o644)
	if _, err := graph.Load(p); err == nil || !strings.Contains(err.Error(), "inside the model's folder") {
		t.Fatalf("got %v, want an error about the location", err)
	}
}
