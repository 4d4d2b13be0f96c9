package serve_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

func requireORT(t testing.TB) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// fixture is a tiny LLaMA on disk and adapters for it: lora4 (r=4 on q
// and v), lora8 (r=8 on k, o and the MLP's down projection) and a prefix
// of 3 tokens, each as a HuggingFace PEFT folder.
type fixture struct {
	dir, base            string
	cfg                  models.LlamaConfig
	lora4, lora8, prefix string
	ads                  map[string]*adapter.Adapter // by path
	prompts              [][]int64
	newTokens            int
}

func newFixture(t testing.TB, cfg models.LlamaConfig) *fixture {
	t.Helper()
	requireORT(t)
	f := &fixture{dir: t.TempDir(), cfg: cfg, ads: map[string]*adapter.Adapter{}, newTokens: 8,
		prompts: [][]int64{{1, 5, 9, 3}, {7, 2}, {4, 4, 8, 1, 6, 2, 11}}}
	m := f.build(t)
	f.base = filepath.Join(f.dir, "base.onnx")
	if err := m.Save(f.base, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	f.lora4 = f.loraDir(t, "lora4", 4, 1, ".*q_proj", ".*v_proj")
	f.lora8 = f.loraDir(t, "lora8", 8, 2, ".*k_proj", ".*o_proj", ".*down_proj")
	f.prefix = f.prefixDir(t, "prefix", 3, 4)
	return f
}

func (f *fixture) build(t testing.TB) *graph.Model {
	t.Helper()
	m, err := models.Llama(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// loraDir saves a LoRA adapter of rank r on targets, with A drawn from
// seed and B filled with values, so that it changes the model's output.
func (f *fixture) loraDir(t testing.TB, name string, r int, seed uint64, targets ...string) string {
	t.Helper()
	m := f.build(t)
	cfg := adapter.DefaultLoRAConfig(targets...)
	cfg.R, cfg.Alpha = r, float64(2*r)
	if _, _, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(seed)); err != nil {
		t.Fatal(err)
	}
	sites, err := rewrite.Sites(m)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sites {
		b := make([]float32, s.R*int(s.Out))
		for j := range b {
			b[j] = float32((i*3+j*int(seed))%11-5) * 0.08
		}
		if err := graph.SetFloat32s(m.Initializer(s.B), b); err != nil {
			t.Fatal(err)
		}
	}
	ad, err := rewrite.Extract(m)
	if err != nil {
		t.Fatal(err)
	}
	return f.save(t, name, ad)
}

// prefixDir saves a prefix adapter of p tokens drawn from seed, scaled up
// so that it changes the model's output.
func (f *fixture) prefixDir(t testing.TB, name string, p int, seed uint64) string {
	t.Helper()
	m := f.build(t)
	if _, _, err := rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: p}, rewrite.WithSeed(seed)); err != nil {
		t.Fatal(err)
	}
	ad, err := rewrite.Extract(m)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ad.Prompt.Data {
		ad.Prompt.Data[i] *= 20
	}
	return f.save(t, name, ad)
}

func (f *fixture) save(t testing.TB, name string, ad *adapter.Adapter) string {
	t.Helper()
	dir := filepath.Join(f.dir, name)
	if err := adapter.SaveDir(dir, ad); err != nil {
		t.Fatal(err)
	}
	f.ads[dir] = ad
	return dir
}

// reference returns the greedy tokens of every prompt on the merged model
// of the adapter at path ("" for the base), or on the prefixed model for
// a prefix adapter, one prompt at a time with runtime's Generator.
func (f *fixture) reference(t testing.TB, path string) [][]int64 {
	t.Helper()
	m := f.build(t)
	defer m.Close()
	var opts []session.Option
	if ad := f.ads[path]; ad != nil {
		if ad.LoRA != nil {
			if err := mergeInto(m, ad); err != nil {
				t.Fatal(err)
			}
		} else {
			opts = append(opts, session.WithAdapter(ad))
		}
	}
	g := openGenerator(t, m, opts...)
	var out [][]int64
	for _, p := range f.prompts {
		toks, err := g.Generate(context.Background(), p, rt.GenerateOptions{MaxNewTokens: f.newTokens})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, toks)
	}
	return out
}

func mergeInto(m *graph.Model, ad *adapter.Adapter) error { return rewrite.MergeAdapter(m, ad) }

// openGenerator opens a session on m, closed with the test, and a
// Generator on it.
func openGenerator(t testing.TB, m *graph.Model, opts ...session.Option) *rt.Generator {
	t.Helper()
	s, err := session.OpenModel(m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	g, err := rt.NewGenerator(s.Session)
	if err != nil {
		t.Fatal(err)
	}
	return g
}
