package rewrite_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
)

// legacyDir holds models adapted by an earlier peftonnx, whose records
// store configs in that version's format (testdata/legacy/README.md).
const legacyDir = "../testdata/legacy"

func loadLegacy(t *testing.T, name string) *graph.Model {
	t.Helper()
	m, err := graph.Load(filepath.Join(legacyDir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// sameFiles reports the files of dir want whose bytes differ in dir got.
func sameFiles(t *testing.T, got, want string) {
	t.Helper()
	entries, err := os.ReadDir(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		w, err := os.ReadFile(filepath.Join(want, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		g, err := os.ReadFile(filepath.Join(got, e.Name()))
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if e.Name() == adapter.HFConfigFile {
			// Later versions record the weights' hash in the config
			// (adapter's pair check); all else is as before.
			g = withoutWeightsHash(t, g)
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s differs from what the earlier version exported (%d bytes, want %d)", e.Name(), len(g), len(w))
		}
	}
}

// withoutWeightsHash removes the "weights_sha256" line that later
// versions add to the "peftonnx" object of adapter_config.json.
func withoutWeightsHash(t *testing.T, config []byte) []byte {
	t.Helper()
	re := regexp.MustCompile(`,\n    "weights_sha256": "[0-9a-f]{64}"\n`)
	if !re.Match(config) {
		t.Fatalf("the exported config records no weights hash:\n%s", config)
	}
	return re.ReplaceAll(config, []byte("\n"))
}

// TestLegacyModelsExport: the adapters that an earlier version exported
// from its own adapted models come out of them again, byte for byte but
// for the weights hash that the config gained since.
func TestLegacyModelsExport(t *testing.T) {
	for _, c := range []struct {
		model, adapter string
		extract        func(*graph.Model) (*adapter.Adapter, error)
	}{
		{"llama-lora.onnx", "llama-lora.adapter", rewrite.ExtractAdapter},
		{"gpt2-lora-qv.onnx", "gpt2-lora-qv.adapter", rewrite.ExtractAdapter},
		{"llama-prefix.onnx", "llama-prefix.adapter", rewrite.ExtractPrefix},
	} {
		t.Run(c.model, func(t *testing.T) {
			m := loadLegacy(t, c.model)
			ad, err := c.extract(m)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			if err := adapter.SaveDir(out, ad); err != nil {
				t.Fatal(err)
			}
			sameFiles(t, out, filepath.Join(legacyDir, c.adapter))
		})
	}
}

// TestLegacyModelsMerge: merging a model adapted by an earlier version
// gives the model that version merged, bit for bit.
func TestLegacyModelsMerge(t *testing.T) {
	for _, name := range []string{"llama-lora", "gpt2-lora-qv"} {
		t.Run(name, func(t *testing.T) {
			m := loadLegacy(t, name+".onnx")
			if err := rewrite.Merge(m); err != nil {
				t.Fatal(err)
			}
			want := loadLegacy(t, name+".merged.onnx")
			if g, w := len(m.Graph().Node), len(want.Graph().Node); g != w {
				t.Errorf("merged model has %d nodes, want %d", g, w)
			}
			for _, wt := range want.Graph().Initializer {
				gt := m.Initializer(wt.Name)
				if gt == nil {
					t.Errorf("merged model lacks initializer %q", wt.Name)
					continue
				}
				gb, err := m.TensorBytes(gt)
				if err != nil {
					t.Fatal(err)
				}
				wb, err := want.TensorBytes(wt)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(gb, wb) {
					t.Errorf("initializer %q differs from the earlier version's merge", wt.Name)
				}
			}
		})
	}
}

// TestLegacyAsInputs: a model whose LoRA factors are inputs, written by an
// earlier version, is still known as one.
func TestLegacyAsInputs(t *testing.T) {
	sites, err := rewrite.Sites(loadLegacy(t, "llama-lora-inputs.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 14 {
		t.Fatalf("got %d sites, want 14", len(sites))
	}
	if !sites[0].AsInputs || sites[0].R != 2 {
		t.Errorf("site 0: as inputs %v, r %d; want as inputs, r 2", sites[0].AsInputs, sites[0].R)
	}
}
