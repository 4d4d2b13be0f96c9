package graph_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// externalModel saves a model of one 4-value float32 initializer "w"
// whose data is in the external file w.bin, and returns its path.
func externalModel(t *testing.T, dir string) string {
	t.Helper()
	m := graph.New(nil2(), "")
	m.AddInitializer(graph.NewFloat32Tensor("w", dtype.Float32, []int64{4}, []float32{1, 2, 3, 4}))
	p := filepath.Join(dir, "m.onnx")
	if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1, DataFile: "w.bin"}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMissingFileIsNotExist checks that every way package graph meets a
// missing file returns an error for which errors.Is(err, fs.ErrNotExist)
// holds, and that still names the file.
func TestMissingFileIsNotExist(t *testing.T) {
	tests := []struct {
		reason string
		run    func(dir string) error
		names  string // a part of the message: the file at fault
	}{
		{"Load of a missing model", func(dir string) error {
			_, err := graph.Load(filepath.Join(dir, "nope.onnx"))
			return err
		}, "nope.onnx"},
		{"Load of a model whose external data file is missing", func(dir string) error {
			p := externalModel(t, dir)
			os.Remove(filepath.Join(dir, "w.bin"))
			_, err := graph.Load(p)
			return err
		}, "w.bin"},
		{"reading a tensor whose external data file went away after Load", func(dir string) error {
			m, err := graph.Load(externalModel(t, dir))
			if err != nil {
				return err
			}
			defer m.Close()
			os.Remove(filepath.Join(dir, "w.bin"))
			_, err = m.Float32s(m.Initializer("w"))
			return err
		}, "w.bin"},
		{"Save into a missing folder", func(dir string) error {
			m := graph.New(nil2(), "")
			return m.Save(filepath.Join(dir, "no", "m.onnx"), graph.SaveOptions{})
		}, "m.onnx"},
	}
	for i, test := range tests {
		err := test.run(t.TempDir())
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("test %d (%s): got %v, want an error that is fs.ErrNotExist", i, test.reason, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "graph: ") || !strings.Contains(msg, test.names) {
			t.Errorf("test %d (%s): got %q, want a graph error naming %s", i, test.reason, msg, test.names)
		}
	}
}
