package models

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// TestLlamaConfigRecord builds LLaMA models of several configs, saves and
// loads each, and checks that LlamaConfigOf gives back the config with its
// defaults; and that models without the record, or with a broken one,
// are errors that say so.
func TestLlamaConfigRecord(t *testing.T) {
	dir := t.TempDir()
	tiny := LlamaTiny()
	odd := LlamaTiny()
	odd.NoCache, odd.RopeInterleaved, odd.RMSNormEps, odd.RopeTheta, odd.MaxPositions, odd.InitStd, odd.Seed = true, true, 1e-5, 5e5, 64, 0.1, 7
	half := LlamaTiny()
	half.DType = dtype.Float16
	builder := LlamaTiny()
	builder.Producer, builder.Builder.PackedQKV = ModelBuilder, true
	for i, c := range []LlamaConfig{tiny, odd, half, builder} {
		m, err := Llama(c)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "llama.onnx")
		if err := m.Save(path, graph.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		loaded, err := graph.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := LlamaConfigOf(loaded)
		loaded.Close()
		if err != nil {
			t.Fatalf("config %d: %v", i, err)
		}
		if want := c.withDefaults(); !reflect.DeepEqual(got, want) {
			t.Errorf("config %d: read back %+v, want %+v", i, got, want)
		}
		// Building again records once, not twice.
		if n := countKey(m, LlamaConfigKey); n != 1 {
			t.Errorf("config %d: %d records", i, n)
		}
	}

	gpt2, err := GPT2(GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LlamaConfigOf(gpt2); err == nil || !strings.Contains(err.Error(), "records no LLaMA config") {
		t.Errorf("GPT-2: got %v, want an error that the model records no LLaMA config", err)
	}
	m, err := Llama(tiny)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ reason, value, want string }{
		{"not JSON", "{", LlamaConfigKey},
		{"another version", `{"version":9}`, "version 9"},
		{"another producer", `{"version":1,"producer":"transformer-optimizer"}`, "transformer-optimizer"},
		{"sizes that do not build", `{"version":1,"producer":"optimum","vocab_size":32,"hidden_size":16,"num_hidden_layers":1,"num_attention_heads":3,"intermediate_size":8}`, "not a multiple of heads 3"},
	} {
		for _, p := range m.Proto.MetadataProps {
			if p.Key == LlamaConfigKey {
				p.Value = tc.value
			}
		}
		if _, err := LlamaConfigOf(m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.reason, err, tc.want)
		}
	}
}

// countKey counts m's metadata entries called key.
func countKey(m *graph.Model, key string) int {
	n := 0
	for _, p := range m.Proto.MetadataProps {
		if p.Key == key {
			n++
		}
	}
	return n
}

// TestCheckTensorParallel checks the reasons CheckTensorParallel gives.
func TestCheckTensorParallel(t *testing.T) {
	ok := LlamaTiny()
	ok.NoCache = true
	half, cached, builder := ok, ok, ok
	half.DType = dtype.Float16
	cached.NoCache = false
	builder.Producer = ModelBuilder
	for _, tc := range []struct {
		reason string
		c      LlamaConfig
		degree int
		want   string // "" for no error
	}{
		{"2 ranks", ok, 2, ""},
		{"1 rank", ok, 1, ""},
		{"degree 0", ok, 0, "want 1 or more"},
		{"more ranks than KV heads", ok, 4, "does not divide the 4 heads, 2 KV heads"},
		{"float16", half, 2, "float16"},
		{"KV cache", cached, 2, "KV cache"},
		{"model builder", builder, 2, "model-builder"},
	} {
		err := tc.c.CheckTensorParallel(tc.degree)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.reason, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error containing %q", tc.reason, err, tc.want)
		}
	}
}
