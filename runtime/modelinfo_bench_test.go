package runtime

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// BenchmarkModelInfo500MB reads the interface of models.Llama500MB saved
// with graph.Save (its weights inline, one 500 MB file): the scan that a
// session does before ONNX Runtime sees the model, which seeks past the
// weights, against graph.Load of the same file, which reads them all.
func BenchmarkModelInfo500MB(b *testing.B) {
	m, err := models.Llama(models.Llama500MB())
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "llama.onnx")
	if err := m.Save(path, graph.SaveOptions{}); err != nil {
		b.Fatal(err)
	}
	m = nil
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("scan", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			src, err := newFileSource(f)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := readModelInfo(src); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("graph.Load", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			g, err := graph.Load(path)
			if err != nil {
				b.Fatal(err)
			}
			g.Close()
		}
	})
}
