package tokenizer_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/tokenizer"
)

// TestMissingFileIsNotExist checks that Load of a missing tokenizer.json,
// or of a missing folder, is an error that is fs.ErrNotExist and names the
// file.
func TestMissingFileIsNotExist(t *testing.T) {
	dir := t.TempDir()
	for i, path := range []string{
		filepath.Join(dir, "tokenizer.json"),
		filepath.Join(dir, "no", "tokenizer.json"),
	} {
		_, err := tokenizer.Load(path)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("test %d: Load(%s): got %v, want an error that is fs.ErrNotExist", i, path, err)
			continue
		}
		if want := "tokenizer: " + path + ": no such file"; err.Error() != want {
			t.Errorf("test %d: got %q want %q", i, err, want)
		}
	}
}
