package models

import (
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// BenchmarkBuildLlama500MB builds the 125M-parameter model: weight
// generation dominates.
func BenchmarkBuildLlama500MB(b *testing.B) {
	c := Llama500MB()
	b.SetBytes(4 * c.NumParams())
	for b.Loop() {
		if _, err := Llama(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadLlama500MB loads the 500 MB model saved with external data.
func BenchmarkLoadLlama500MB(b *testing.B) {
	c := Llama500MB()
	m, err := Llama(c)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "llama.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
		b.Fatal(err)
	}
	m = nil
	b.SetBytes(4 * c.NumParams())
	b.ResetTimer()
	for b.Loop() {
		l, err := graph.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := WeightsOf(l); err != nil { // touch every weight
			b.Fatal(err)
		}
		l.Close()
	}
}

func BenchmarkFillNormal(b *testing.B) {
	const n = 1 << 20
	b.SetBytes(4 * n)
	for b.Loop() {
		normalBytes(n, dtype.Float32, 1, 0, 1)
	}
}
