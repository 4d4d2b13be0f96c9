package runtime

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TestErrorChain checks that runtime keeps the errors of package graph in
// the chain: it reads the initializers it feeds itself (the defaults of
// optional inputs) through graph, in tensorFromProto.
func TestErrorChain(t *testing.T) {
	external := func(location string) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{Name: "w", DataType: int32(dtype.Float32), Dims: []int64{4}, DataLocation: onnxpb.TensorProto_EXTERNAL,
			ExternalData: []*onnxpb.StringStringEntryProto{{Key: "location", Value: location}}}
	}
	isNotExist := func(err error) bool { return errors.Is(err, fs.ErrNotExist) }
	isGraphFormatError := func(err error) bool {
		var fe *graph.FormatError
		return errors.As(err, &fe)
	}
	tests := []struct {
		reason string
		run    func(dir string) error
		check  func(error) bool
		want   string
	}{
		{"an initializer whose external file is missing", func(dir string) error {
			_, err := tensorFromProto(external("w.bin"), dir)
			return err
		}, isNotExist, "fs.ErrNotExist"},
		{"an initializer whose external file is short", func(dir string) error {
			os.WriteFile(filepath.Join(dir, "w.bin"), make([]byte, 8), 0o644)
			_, err := tensorFromProto(external("w.bin"), dir)
			return err
		}, isGraphFormatError, "*graph.FormatError"},
		{"an initializer outside the model's folder", func(dir string) error {
			_, err := tensorFromProto(external("../w.bin"), dir)
			return err
		}, isGraphFormatError, "*graph.FormatError"},
	}
	for i, test := range tests {
		if err := test.run(t.TempDir()); !test.check(err) {
			t.Errorf("test %d (%s): got %v, want an error that is %s", i, test.reason, err, test.want)
		}
	}
}

// TestNewSessionMissingModel checks that NewSession of a missing file is
// an error that is fs.ErrNotExist.
func TestNewSessionMissingModel(t *testing.T) {
	if err := Init(); errors.Is(err, ErrLibraryNotFound) {
		t.Skip(err)
	}
	if _, err := NewSession(filepath.Join(t.TempDir(), "nope.onnx")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want an error that is fs.ErrNotExist", err)
	}
}
