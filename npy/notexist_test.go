package npy_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/npy"
)

// TestMissingFileIsNotExist checks that ReadFile and WriteFile return, for
// a missing file or folder, an error that is fs.ErrNotExist and names the
// file.
func TestMissingFileIsNotExist(t *testing.T) {
	a, err := npy.New([]int64{2}, []float32{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		reason string
		run    func(dir string) error
		names  string
	}{
		{"ReadFile of a missing file", func(dir string) error {
			_, err := npy.ReadFile(filepath.Join(dir, "nope.npy"))
			return err
		}, "nope.npy"},
		{"WriteFile into a missing folder", func(dir string) error {
			return npy.WriteFile(filepath.Join(dir, "no", "a.npy"), a)
		}, "a.npy"},
	}
	for i, test := range tests {
		err := test.run(t.TempDir())
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("test %d (%s): got %v, want an error that is fs.ErrNotExist", i, test.reason, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "npy: ") || !strings.Contains(msg, test.names) {
			t.Errorf("test %d (%s): got %q, want an npy error naming %s", i, test.reason, msg, test.names)
		}
	}
}
