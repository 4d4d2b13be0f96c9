package adapter_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
)

// TestMissingFileIsNotExist checks that every public reader of package
// adapter returns, for a missing adapter file or folder, an error for
// which errors.Is(err, fs.ErrNotExist) holds and that names it.
func TestMissingFileIsNotExist(t *testing.T) {
	tests := []struct {
		reason string
		run    func(dir string) error
		names  string // a part of the message: the file or folder at fault
	}{
		{"Load of a missing path", func(dir string) error {
			_, err := adapter.Load(filepath.Join(dir, "nope"))
			return err
		}, "nope"},
		{"Load of a missing .onnx_adapter file", func(dir string) error {
			_, err := adapter.Load(filepath.Join(dir, "nope.onnx_adapter"))
			return err
		}, "nope.onnx_adapter"},
		{"LoadDir of a missing folder", func(dir string) error {
			_, err := adapter.LoadDir(filepath.Join(dir, "nope"))
			return err
		}, "nope"},
		{"LoadDir of a folder without a config", func(dir string) error {
			_, err := adapter.LoadDir(dir)
			return err
		}, adapter.HFConfigFile},
		{"LoadDir of a PEFT folder without its weights", func(dir string) error {
			b, err := os.ReadFile(filepath.Join("testdata", "hf_lora", adapter.HFConfigFile))
			if err != nil {
				return err
			}
			os.WriteFile(filepath.Join(dir, adapter.HFConfigFile), b, 0o644)
			_, err = adapter.LoadDir(dir)
			return err
		}, adapter.HFWeightsFile},
		{"ReadSafetensors", func(dir string) error {
			_, _, err := adapter.ReadSafetensors(filepath.Join(dir, "nope.safetensors"))
			return err
		}, "nope.safetensors"},
		{"ReadPdparams", func(dir string) error {
			_, err := adapter.ReadPdparams(filepath.Join(dir, "nope.pdparams"))
			return err
		}, "nope.pdparams"},
		{"ReadONNXAdapter", func(dir string) error {
			_, err := adapter.ReadONNXAdapter(filepath.Join(dir, "nope.onnx_adapter"))
			return err
		}, "nope.onnx_adapter"},
	}
	for i, test := range tests {
		err := test.run(t.TempDir())
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("test %d (%s): got %v, want an error that is fs.ErrNotExist", i, test.reason, err)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "adapter: ") || !strings.Contains(msg, test.names) {
			t.Errorf("test %d (%s): got %q, want an adapter error naming %s", i, test.reason, msg, test.names)
		}
	}
}
