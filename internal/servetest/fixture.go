package servetest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// Fixture is a base model on disk and adapters for it.
type Fixture struct {
	Dir    string // the folder that holds everything
	Base   string // the model file, Dir/model.onnx
	Config models.LlamaConfig
	// LoRA4 (r=4 on q and v), LoRA8 (r=8 on k, o and the MLP's down
	// projection), DoRA (r=4 on q, v and down, use_dora, its magnitudes
	// away from W's column norms) and Prefix (3 virtual tokens) are HF
	// PEFT folders.
	LoRA4, LoRA8, DoRA, Prefix string
	ads                        map[string]*adapter.Adapter // by folder
}

// TinyLlamaTokenizerDir is the shared tiny LLaMA's folder, relative to a
// package folder one level under the project's root; Dir of a deeper
// package adds "../" for each level.
const TinyLlamaTokenizerDir = "../../shared/models/tiny-llama-genai-fp16"

// TinyLlamaVocab is the vocabulary of that tokenizer, which a Config must
// have for the text to decode.
const TinyLlamaVocab = 32000

// RequireORT skips the test where no ONNX Runtime library is found.
func RequireORT(t testing.TB) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// New saves the model of cfg and its adapters in a temporary folder.
// With tokenizerDir, its tokenizer.json and tokenizer_config.json are
// copied beside the model (the test skips where that folder is missing).
func New(t testing.TB, cfg models.LlamaConfig, tokenizerDir string) *Fixture {
	t.Helper()
	RequireORT(t)
	f := &Fixture{Dir: t.TempDir(), Config: cfg, ads: map[string]*adapter.Adapter{}}
	if tokenizerDir != "" {
		for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
			b, err := os.ReadFile(filepath.Join(tokenizerDir, name))
			if errors.Is(err, os.ErrNotExist) {
				t.Skipf("the shared models are not beside the project: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(f.Dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := f.Model(t)
	f.Base = filepath.Join(f.Dir, "model.onnx")
	if err := m.Save(f.Base, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	f.LoRA4 = f.lora(t, "lora4", 4, 1, false, ".*q_proj", ".*v_proj")
	f.LoRA8 = f.lora(t, "lora8", 8, 2, false, ".*k_proj", ".*o_proj", ".*down_proj")
	f.DoRA = f.lora(t, "dora", 4, 3, true, ".*q_proj", ".*v_proj", ".*down_proj")
	f.Prefix = f.prefix(t, "prefix", 3, 4)
	return f
}

// Model builds the base model in memory, as New saved it.
func (f *Fixture) Model(t testing.TB) *graph.Model {
	t.Helper()
	m, err := models.Llama(f.Config)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lora saves a LoRA adapter of rank r on targets, A drawn from seed and B
// set to values that change the output; with dora a DoRA adapter, its
// magnitudes scaled by 0.6 to 1.4 from the column norms of W, where
// injection starts them.
func (f *Fixture) lora(t testing.TB, name string, r int, seed uint64, dora bool, targets ...string) string {
	t.Helper()
	m := f.Model(t)
	defer m.Close()
	cfg := adapter.DefaultLoRAConfig(targets...)
	cfg.R, cfg.Alpha, cfg.UseDoRA = r, float64(2*r), dora
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
			b[j] = float32((i*5+j*int(seed+2))%13-6) * 0.1
		}
		if err := graph.SetFloat32s(m.Initializer(s.B), b); err != nil {
			t.Fatal(err)
		}
	}
	ad, err := rewrite.Extract(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ad.Weights {
		if w.Magnitude != nil {
			for j := range w.Magnitude.Data {
				w.Magnitude.Data[j] *= 0.6 + 0.1*float32(j%9)
			}
		}
	}
	return f.save(t, name, ad)
}

// prefix saves a prefix adapter of p virtual tokens, scaled up so that it
// changes the output.
func (f *Fixture) prefix(t testing.TB, name string, p int, seed uint64) string {
	t.Helper()
	m := f.Model(t)
	defer m.Close()
	if _, _, err := rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: p}, rewrite.WithSeed(seed)); err != nil {
		t.Fatal(err)
	}
	ad, err := rewrite.Extract(m)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ad.Prompt.Data {
		ad.Prompt.Data[i] *= 25
	}
	return f.save(t, name, ad)
}

// Adapter returns the adapter that New saved at path (LoRA4, LoRA8 or
// Prefix), nil for another path.
func (f *Fixture) Adapter(path string) *adapter.Adapter { return f.ads[path] }

func (f *Fixture) save(t testing.TB, name string, ad *adapter.Adapter) string {
	t.Helper()
	dir := filepath.Join(f.Dir, name)
	if err := adapter.SaveDir(dir, ad); err != nil {
		t.Fatal(err)
	}
	f.ads[dir] = ad
	return dir
}

// Reference returns the greedy tokens, at most n each, of every prompt on
// the merged model of the LoRA adapter at path ("" for the base), on the
// adapted model of the DoRA adapter (its branches applied, as peftonnx
// apply writes it) or on the prefixed model for the prefix, a prompt at a
// time; eos ends a sequence (its token kept), as it does the engine's.
func (f *Fixture) Reference(t testing.TB, path string, prompts [][]int64, n int, eos []int64) [][]int64 {
	t.Helper()
	m := f.Model(t)
	defer m.Close()
	var opts []session.Option
	if ad := f.ads[path]; ad != nil {
		if ad.LoRA != nil && !ad.LoRA.UseDoRA {
			if err := rewrite.MergeAdapter(m, ad); err != nil {
				t.Fatal(err)
			}
		} else {
			opts = append(opts, session.WithAdapter(ad))
		}
	}
	s, err := session.OpenModel(m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := rt.NewGenerator(s.Session)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]int64
	for _, p := range prompts {
		toks, err := g.Generate(context.Background(), p, rt.GenerateOptions{MaxNewTokens: n, EOS: eos, Feeds: s.Feeds})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, toks)
	}
	return out
}
