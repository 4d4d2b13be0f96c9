package train

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// savedLoRAGPT2 saves loraGPT2 with every tensor in the external file
// m.onnx.data, loads it back, and returns it with its parameters and the
// data file's path.
func savedLoRAGPT2(t *testing.T) (*graph.Model, []string, string) {
	t.Helper()
	m, params := loraGPT2(t)
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	loaded, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loaded.Close() })
	return loaded, params, p + ".data"
}

// TestErrorChain checks that what goes wrong under package train reaches
// its caller whole: errors.Is finds fs.ErrNotExist for a missing data
// file, checkpoint or external weights file, and errors.As finds
// *graph.FormatError and *adapter.FormatError.
func TestErrorChain(t *testing.T) {
	requireORT(t)
	checkpoint := func(t *testing.T) (*Trainer, string) {
		m, params := loraGPT2(t)
		tr, _ := trainSteps(t, m, params, patternData(8, 6, 32, 1), testOptions())
		path, err := tr.SaveCheckpoint(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return tr, path
	}
	tests := []struct {
		reason string
		run    func(t *testing.T) error
		check  func(error) bool
		want   string
	}{
		{"LoadJSONL of a missing file", func(t *testing.T) error {
			_, err := LoadJSONL(filepath.Join(t.TempDir(), "nope.jsonl"), nil)
			return err
		}, isNotExist, "fs.ErrNotExist"},
		{"NewTrainer on a model whose external data went away", func(t *testing.T) error {
			m, params, data := savedLoRAGPT2(t)
			os.Remove(data)
			tr, err := NewTrainer(m, params, patternData(8, 6, 32, 1), testOptions())
			tr.Close()
			return err
		}, isNotExist, "fs.ErrNotExist"},
		{"NewTrainer on truncated external data", func(t *testing.T) error {
			m, params, data := savedLoRAGPT2(t)
			os.Truncate(data, 8)
			tr, err := NewTrainer(m, params, patternData(8, 6, 32, 1), testOptions())
			tr.Close()
			return err
		}, isGraphFormatError, "*graph.FormatError"},
		{"LoadCheckpoint of a missing checkpoint", func(t *testing.T) error {
			tr, _ := checkpoint(t)
			return tr.LoadCheckpoint(filepath.Join(t.TempDir(), "checkpoint-1"))
		}, isNotExist, "fs.ErrNotExist"},
		{"LoadCheckpoint of a checkpoint without its parameters", func(t *testing.T) error {
			tr, path := checkpoint(t)
			os.Remove(filepath.Join(path, paramsFile))
			return tr.LoadCheckpoint(path)
		}, isNotExist, "fs.ErrNotExist"},
		{"LoadCheckpoint of malformed parameters", func(t *testing.T) error {
			tr, path := checkpoint(t)
			os.WriteFile(filepath.Join(path, paramsFile), []byte("\x08\x00\x00\x00\x00\x00\x00\x00{}garbage"), 0o644)
			return tr.LoadCheckpoint(path)
		}, isAdapterFormatError, "*adapter.FormatError"},
	}
	for i, test := range tests {
		if err := test.run(t); !test.check(err) {
			t.Errorf("test %d (%s): got %v, want an error that is %s", i, test.reason, err, test.want)
		}
	}
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

func isGraphFormatError(err error) bool {
	var fe *graph.FormatError
	return errors.As(err, &fe)
}

func isAdapterFormatError(err error) bool {
	var fe *adapter.FormatError
	return errors.As(err, &fe)
}
