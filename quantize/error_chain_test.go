package quantize_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quantize"
)

// TestErrorChain checks that quantize.Model, on a model whose external
// weights file went away or was cut after Load, returns an error that is
// fs.ErrNotExist, or a *graph.FormatError, for errors.Is and errors.As.
func TestErrorChain(t *testing.T) {
	tests := []struct {
		reason string
		spoil  func(data string)
		check  func(error) bool
		want   string
	}{
		{"removed", func(data string) { os.Remove(data) }, func(err error) bool { return errors.Is(err, fs.ErrNotExist) }, "fs.ErrNotExist"},
		{"truncated", func(data string) { os.Truncate(data, 8) }, func(err error) bool {
			var fe *graph.FormatError
			return errors.As(err, &fe)
		}, "*graph.FormatError"},
	}
	for i, test := range tests {
		p := filepath.Join(t.TempDir(), "m.onnx")
		if err := llamaTiny(t).Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
			t.Fatal(err)
		}
		m, err := graph.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		test.spoil(p + ".data")
		_, err = quantize.Model(m, quantize.Options{})
		m.Close()
		if !test.check(err) {
			t.Errorf("test %d (%s): got %v, want an error that is %s", i, test.reason, err, test.want)
		}
	}
}
