package rewrite_test

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
)

// savedGPT2 saves a tiny GPT-2, with LoRA on c_attn when lora is set,
// every tensor in the external file m.onnx.data, and loads it back.
func savedGPT2(t *testing.T, lora bool) (*graph.Model, string) {
	t.Helper()
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	if lora {
		cfg := adapter.DefaultLoRAConfig(".*c_attn")
		cfg.R, cfg.Alpha = 2, 4
		if _, _, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(1)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	loaded, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loaded.Close() })
	return loaded, p + ".data"
}

// goodAdapter returns a LoRA adapter for the tiny GPT-2's c_attn.
func goodAdapter(t *testing.T) *adapter.Adapter {
	t.Helper()
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	cfg := adapter.DefaultLoRAConfig(".*c_attn")
	cfg.R, cfg.Alpha = 2, 4
	if _, _, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	ad, err := rewrite.Extract(m)
	if err != nil {
		t.Fatal(err)
	}
	return ad
}

// badAdapter is goodAdapter with a lora_A that holds fewer values than
// its shape says.
func badAdapter(t *testing.T) *adapter.Adapter {
	ad := goodAdapter(t)
	w := ad.Weights["transformer.h.0.attn.c_attn"]
	w.A.Data = w.A.Data[1:]
	return ad
}

// TestErrorChain checks that the errors of packages graph and adapter
// reach a caller of rewrite whole: errors.As finds *graph.FormatError and
// *adapter.FormatError, and errors.Is finds fs.ErrNotExist for an
// external data file that went away.
func TestErrorChain(t *testing.T) {
	truncate := func(data string) { os.Truncate(data, 8) }
	remove := func(data string) { os.Remove(data) }
	tests := []struct {
		reason string
		lora   bool         // the saved model carries LoRA branches
		spoil  func(string) // spoils the external data file after Load
		run    func(m *graph.Model) error
		check  func(error) bool
		want   string
	}{
		{"MergeAdapter over truncated weights", false, truncate, func(m *graph.Model) error {
			return rewrite.MergeAdapter(m, goodAdapter(t))
		}, isGraphFormatError, "*graph.FormatError"},
		{"Merge over truncated weights", true, truncate, func(m *graph.Model) error {
			return rewrite.Merge(m)
		}, isGraphFormatError, "*graph.FormatError"},
		{"Extract from truncated weights", true, truncate, func(m *graph.Model) error {
			_, err := rewrite.Extract(m)
			return err
		}, isGraphFormatError, "*graph.FormatError"},
		{"MergeAdapter over a removed data file", false, remove, func(m *graph.Model) error {
			return rewrite.MergeAdapter(m, goodAdapter(t))
		}, isNotExist, "fs.ErrNotExist"},
		{"Extract from a removed data file", true, remove, func(m *graph.Model) error {
			_, err := rewrite.Extract(m)
			return err
		}, isNotExist, "fs.ErrNotExist"},
		{"ApplyLoRA of a malformed adapter", false, nil, func(m *graph.Model) error {
			_, _, err := rewrite.ApplyLoRA(m, badAdapter(t))
			return err
		}, isAdapterFormatError, "*adapter.FormatError"},
		{"MergeAdapter of a malformed adapter", false, nil, func(m *graph.Model) error {
			return rewrite.MergeAdapter(m, badAdapter(t))
		}, isAdapterFormatError, "*adapter.FormatError"},
		{"Feeds of a malformed adapter", true, nil, func(m *graph.Model) error {
			_, err := rewrite.Feeds(m, badAdapter(t))
			return err
		}, isAdapterFormatError, "*adapter.FormatError"},
	}
	for i, test := range tests {
		m, data := savedGPT2(t, test.lora)
		if test.spoil != nil {
			test.spoil(data)
		}
		if err := test.run(m); !test.check(err) {
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
