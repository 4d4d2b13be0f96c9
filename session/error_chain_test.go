package session_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/session"
)

// chainFixture is a tiny LLaMA saved with its weights in base.onnx.data,
// and a LoRA adapter for it saved as a PEFT folder.
type chainFixture struct {
	base, data, lora string
	ad               *adapter.Adapter
}

func newChainFixture(t *testing.T) chainFixture {
	t.Helper()
	dir := t.TempDir()
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	f := chainFixture{base: filepath.Join(dir, "base.onnx"), lora: filepath.Join(dir, "lora")}
	f.data = f.base + ".data"
	if err := m.Save(f.base, graph.SaveOptions{ExternalData: true, Threshold: 64}); err != nil {
		t.Fatal(err)
	}
	cfg := adapter.DefaultLoRAConfig(".*q_proj")
	cfg.R = 2
	if _, _, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	if f.ad, err = rewrite.Extract(m); err != nil {
		t.Fatal(err)
	}
	if err := adapter.SaveDir(f.lora, f.ad); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestErrorChain checks that session.Open, OpenModel and LoadAdapter
// return errors for which errors.Is finds fs.ErrNotExist when a model,
// external data or adapter file is missing, and errors.As finds
// *graph.FormatError and *adapter.FormatError when one is malformed. Every
// case fails before ONNX Runtime is involved.
func TestErrorChain(t *testing.T) {
	open := func(path string, opts ...session.Option) error {
		s, err := session.Open(path, opts...)
		if err == nil {
			s.Close()
		}
		return err
	}
	tests := []struct {
		reason string
		run    func(f chainFixture) error
		check  func(error) bool
		want   string
	}{
		{"a missing model", func(f chainFixture) error {
			return open(filepath.Join(filepath.Dir(f.base), "nope.onnx"))
		}, isNotExist, "fs.ErrNotExist"},
		{"a missing external data file", func(f chainFixture) error {
			os.Remove(f.data)
			return open(f.base)
		}, isNotExist, "fs.ErrNotExist"},
		{"a missing adapter", func(f chainFixture) error {
			return open(f.base, session.WithAdapterFile(filepath.Join(f.lora, "nope")))
		}, isNotExist, "fs.ErrNotExist"},
		{"an adapter folder without its weights", func(f chainFixture) error {
			os.Remove(filepath.Join(f.lora, adapter.HFWeightsFile))
			return open(f.base, session.WithAdapterFile(f.lora))
		}, isNotExist, "fs.ErrNotExist"},
		{"LoadAdapter of a missing adapter", func(f chainFixture) error {
			_, err := session.LoadAdapter(filepath.Join(f.lora, "nope"))
			return err
		}, isNotExist, "fs.ErrNotExist"},
		{"a model that is no ONNX model", func(f chainFixture) error {
			os.WriteFile(f.base, []byte("\xff\xff\xff\xff"), 0o644)
			return open(f.base)
		}, isGraphFormatError, "*graph.FormatError"},
		{"a model whose external data was cut after Load, spilled to a file", func(f chainFixture) error {
			m, err := graph.Load(f.base)
			if err != nil {
				return err
			}
			defer m.Close()
			os.Truncate(f.data, 8)
			s, err := session.OpenModel(m, session.WithAdapter(f.ad), session.WithSpillAbove(1))
			if err == nil {
				s.Close()
			}
			return err
		}, isGraphFormatError, "*graph.FormatError"},
		{"an adapter whose weights file is malformed", func(f chainFixture) error {
			os.WriteFile(filepath.Join(f.lora, adapter.HFWeightsFile), []byte("\x02\x00\x00\x00\x00\x00\x00\x00{"), 0o644)
			return open(f.base, session.WithAdapterFile(f.lora))
		}, isAdapterFormatError, "*adapter.FormatError"},
		{"an adapter whose factor disagrees with its shape", func(f chainFixture) error {
			for name, w := range f.ad.Weights {
				w.A.Data = w.A.Data[1:]
				f.ad.Weights[name] = w
			}
			return open(f.base, session.WithAdapter(f.ad))
		}, isAdapterFormatError, "*adapter.FormatError"},
	}
	for i, test := range tests {
		if err := test.run(newChainFixture(t)); !test.check(err) {
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
