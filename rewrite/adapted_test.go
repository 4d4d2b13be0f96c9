package rewrite_test

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
)

// TestAdapterConfig reads the configs that an earlier version recorded,
// without extracting weights.
func TestAdapterConfig(t *testing.T) {
	cfg, err := rewrite.AdapterConfig(loadLegacy(t, "llama-lora.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	lora, ok := cfg.(*adapter.LoRAConfig)
	if !ok {
		t.Fatalf("llama-lora.onnx: got %T, want *adapter.LoRAConfig", cfg)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"r", lora.R, 4}, {"alpha", lora.Alpha, 8.0}, {"dropout", lora.Dropout, 0.1},
		{"rslora", lora.UseRSLoRA, true}, {"lora_plus_scale", lora.LoRAPlusScale, 4.0},
		{"targets", lora.TargetModules, []string{".*(q|v)_proj"}}, {"trainable", lora.TrainableModules, []string{".*norm.*"}},
		{"dtype", lora.DType, dtype.Float32}, {"tensor parallel", lora.TensorParallelDegree, -1},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("llama-lora.onnx: %s %v, want %v", c.what, c.got, c.want)
		}
	}
	cfg, err = rewrite.AdapterConfig(loadLegacy(t, "llama-prefix.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	prefix, ok := cfg.(*adapter.PrefixConfig)
	if !ok {
		t.Fatalf("llama-prefix.onnx: got %T, want *adapter.PrefixConfig", cfg)
	}
	want := adapter.PrefixConfig{NumPrefixTokens: 3, NumAttentionHeads: 4, MultiQueryGroupNum: 2, NumHiddenLayers: 2, HiddenSize: 16,
		PrefixProjection: true, PrefixProjectionHiddenSize: 8, PrefixDropout: 0.1, DType: dtype.Float32, TaskType: "CAUSAL_LM", BaseModelName: "llama.onnx"}
	if *prefix != want {
		t.Errorf("llama-prefix.onnx: got %+v\nwant %+v", *prefix, want)
	}
	_, err = rewrite.AdapterConfig(loadLegacy(t, "llama.onnx"))
	if !errors.Is(err, rewrite.ErrNoAdapter) || !strings.Contains(err.Error(), "llama.onnx") {
		t.Errorf("base model: got %v, want ErrNoAdapter naming the file", err)
	}
}

// TestExtractSummarizeEitherType: Extract and Summarize decide the PEFT
// type themselves and give what the typed functions give.
func TestExtractSummarizeEitherType(t *testing.T) {
	for _, c := range []struct {
		model  string
		typed  func(*graph.Model) (*adapter.Adapter, error)
		prefix bool
	}{
		{"llama-lora.onnx", rewrite.ExtractAdapter, false},
		{"gpt2-lora-qv.onnx", rewrite.ExtractAdapter, false},
		{"llama-prefix.onnx", rewrite.ExtractPrefix, true},
	} {
		t.Run(c.model, func(t *testing.T) {
			m := loadLegacy(t, c.model)
			got, err := rewrite.Extract(m)
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.typed(m)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Extract differs from the typed extraction")
			}
			sum, err := rewrite.Summarize(m)
			if err != nil {
				t.Fatal(err)
			}
			if sum.TrainableParams != got.NumParams() {
				t.Errorf("summary counts %d trainable params, the adapter holds %d", sum.TrainableParams, got.NumParams())
			}
			if c.prefix {
				typed, err := rewrite.SummarizePrefix(m)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(sum, typed) {
					t.Errorf("Summarize %+v, SummarizePrefix %+v", sum, typed)
				}
			}
		})
	}
	base := loadLegacy(t, "llama.onnx")
	for what, f := range map[string]func() error{
		"Extract":   func() error { _, err := rewrite.Extract(base); return err },
		"Summarize": func() error { _, err := rewrite.Summarize(base); return err },
	} {
		if err := f(); !errors.Is(err, rewrite.ErrNoAdapter) {
			t.Errorf("%s of a base model: got %v, want ErrNoAdapter", what, err)
		}
	}
}

// TestExtractValues: values given by name replace the model's, rounded to
// each tensor's type; the rest come from the model.
func TestExtractValues(t *testing.T) {
	m := loadLegacy(t, "llama-lora.onnx")
	sites, err := rewrite.Sites(m)
	if err != nil {
		t.Fatal(err)
	}
	s := sites[0]
	b := make([]float32, s.R*int(s.Out))
	for i := range b {
		b[i] = float32(i) + 0.25
	}
	ad, err := rewrite.ExtractValues(m, map[string][]float32{s.B: b})
	if err != nil {
		t.Fatal(err)
	}
	if got := ad.Weights[s.Module].B.Data; !reflect.DeepEqual(got, b) {
		t.Errorf("B of %s: got %v, want the values given", s.Module, got[:4])
	}
	b[0] = 99 // the adapter keeps no reference
	if ad.Weights[s.Module].B.Data[0] == 99 {
		t.Errorf("the adapter shares the slice it was given")
	}
	plain, err := rewrite.ExtractAdapter(m)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ad.Weights[s.Module].A, plain.Weights[s.Module].A) || !reflect.DeepEqual(ad.Extra, plain.Extra) {
		t.Errorf("tensors not given differ from the model's")
	}
	if _, err := rewrite.ExtractValues(m, map[string][]float32{s.B: b[:3]}); err == nil || !strings.Contains(err.Error(), s.B) {
		t.Errorf("values of the wrong size: got %v, want an error naming %s", err, s.B)
	}
}

// TestApplyEitherType: Apply injects a LoRA or a prefix adapter as its
// config says, and refuses what a model cannot carry, changing nothing.
func TestApplyEitherType(t *testing.T) {
	loadAd := func(name string) *adapter.Adapter {
		ad, err := adapter.LoadDir(filepath.Join(legacyDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return ad
	}
	lora, prefix := loadAd("llama-lora.adapter"), loadAd("llama-prefix.adapter")
	t.Run("lora", func(t *testing.T) {
		m := loadLegacy(t, "llama.onnx")
		got, err := rewrite.Apply(m, lora)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Sites) != 4 || got.Prefix != nil {
			t.Errorf("got %d sites and prefix %v; want 4 sites and no prefix", len(got.Sites), got.Prefix)
		}
		back, err := rewrite.Extract(m)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Weights, lora.Weights) {
			t.Errorf("extracted weights differ from the adapter applied")
		}
	})
	t.Run("prefix", func(t *testing.T) {
		m := loadLegacy(t, "llama.onnx")
		got, err := rewrite.Apply(m, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if got.Prefix == nil || got.Sites != nil || got.Prefix.Config.NumPrefixTokens != 3 {
			t.Errorf("got sites %v and prefix %+v; want a 3-token prefix", got.Sites, got.Prefix)
		}
	})
	for _, c := range []struct {
		name, model string
		ad          *adapter.Adapter
		opts        []rewrite.Option
		want        []string
	}{
		{"prefix on prefix", "llama-prefix.onnx", prefix, nil, []string{"llama-prefix.onnx", "already carries a prefix", "give its base model"}},
		{"prefix on LoRA", "llama-lora.onnx", prefix, nil, []string{"llama-lora.onnx", "carries LoRA branches", "not both"}},
		{"LoRA on prefix", "llama-prefix.onnx", lora, nil, []string{"llama-prefix.onnx", "carries a prefix", "not both"}},
		{"LoRA on LoRA", "llama-lora.onnx", lora, nil, []string{"already carries LoRA branches"}},
		{"AsInputs for a prefix", "llama.onnx", prefix, []rewrite.Option{rewrite.AsInputs()}, []string{"AsInputs", "a prefix has none"}},
		{"PrefixReplacePast for LoRA", "llama.onnx", lora, []rewrite.Option{rewrite.PrefixReplacePast()}, []string{"PrefixReplacePast", "not of LoRA"}},
		{"no adapter", "llama.onnx", nil, nil, []string{"no adapter"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := loadLegacy(t, c.model)
			before, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			_, err = rewrite.Apply(m, c.ad, c.opts...)
			if err == nil {
				t.Fatal("got no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			after, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Errorf("the model changed")
			}
		})
	}
}
