package rewrite

import (
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// TestInjectErrors checks that what cannot be done fails with an error that
// says what and where, and leaves the model as it was.
func TestInjectErrors(t *testing.T) {
	fused := config(4, 8, ".*c_attn")
	fused.EnableLoRAList = adapter.EnableLoRAList{All: []bool{true, false, true}}
	fused.HeadDim = 5
	tp := config(4, 8, ".*c_attn")
	tp.TensorParallelDegree = 2
	layers := config(4, 8, ".*c_attn")
	layers.LayersToTransform = []int{7}
	tests := []struct {
		name string
		cfg  adapter.LoRAConfig
		want []string
	}{
		{"no match", config(4, 8, "nomatch.*"), []string{`"nomatch.*"`, "matched no linear layer", "transformer.h.0.attn.c_attn", "lm_head"}},
		{"tensor parallel", tp, []string{"tensor_parallel_degree 2"}},
		{"head_dim", fused, []string{`layer "transformer.h.0.attn.c_attn"`, "head_dim 5"}},
		{"layers_to_transform", layers, []string{"layers_to_transform [7]"}},
		{"rank", config(0, 8, ".*"), []string{"r must be positive"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := builtModels[2].load(t)
			before := graphBytes(t, m)
			_, _, err := InjectLoRA(m, tc.cfg)
			if err == nil {
				t.Fatalf("got no error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "rewrite: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if graphBytes(t, m) != before {
				t.Errorf("the failed injection changed the model")
			}
		})
	}
}

// TestInjectTwice checks that a model with branches refuses more, and that
// Merge of a model without branches fails.
func TestInjectTwice(t *testing.T) {
	m := builtModels[2].load(t)
	if err := Merge(m); err == nil || !strings.Contains(err.Error(), "carries no LoRA branch") {
		t.Errorf("Merge of a base model: got %v", err)
	}
	if _, _, err := InjectLoRA(m, config(4, 8, ".*c_attn")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := InjectLoRA(m, config(4, 8, ".*c_fc")); err == nil || !strings.Contains(err.Error(), "already carries LoRA branches") {
		t.Errorf("second injection: got %v", err)
	}
}

// TestApplyErrors checks adapters that do not fit the model.
func TestApplyErrors(t *testing.T) {
	m := builtModels[2].load(t)
	cfg := config(2, 4, ".*")
	missing := adapter.NewLoRA(cfg)
	missing.Weights["transformer.h.9.attn.c_attn"] = adapter.LoRAWeights{A: adapter.Zeros(16, 2), B: adapter.Zeros(2, 48)}
	shape := adapter.NewLoRA(cfg)
	shape.Weights["transformer.h.0.attn.c_attn"] = adapter.LoRAWeights{A: adapter.Zeros(16, 2), B: adapter.Zeros(2, 40)}
	ambiguous := adapter.NewLoRA(cfg)
	ambiguous.Weights["c_attn"] = adapter.LoRAWeights{A: adapter.Zeros(16, 2), B: adapter.Zeros(2, 48)}
	tests := []struct {
		name string
		ad   *adapter.Adapter
		want []string
	}{
		{"missing module", missing, []string{`"transformer.h.9.attn.c_attn"`, "matches no linear layer", "transformer.h.0.attn.c_attn"}},
		{"shape", shape, []string{`"transformer.h.0.attn.c_attn"`, "[2 40]", "[2 48]"}},
		{"ambiguous", ambiguous, []string{`"c_attn"`, "matches several layers"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := graphBytes(t, m)
			for what, f := range map[string]func() error{
				"Apply":        func() error { _, _, err := ApplyLoRA(m, tc.ad); return err },
				"MergeAdapter": func() error { return MergeAdapter(m, tc.ad) },
			} {
				err := f()
				if err == nil {
					t.Fatalf("%s: got no error", what)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q does not mention %q", what, err, w)
					}
				}
			}
			if graphBytes(t, m) != before {
				t.Errorf("a failed Apply changed the model")
			}
		})
	}
}

// TestApplyMatchesByName checks the looser module matches of Apply: a
// prefix that the exporter dropped, and genai's attn for self_attn.
func TestApplyMatchesByName(t *testing.T) {
	gpt2 := builtModels[2].load(t)
	ad := adapter.NewLoRA(config(2, 4, ".*"))
	ad.Weights["h.1.attn.c_attn"] = adapter.LoRAWeights{A: adapter.Zeros(16, 2), B: adapter.Zeros(2, 48)}
	sites, _, err := ApplyLoRA(gpt2, ad)
	if err != nil {
		t.Fatal(err)
	}
	if sites[0].Module != "transformer.h.1.attn.c_attn" {
		t.Errorf("got module %q want transformer.h.1.attn.c_attn", sites[0].Module)
	}
	llama := realModel(t, "tiny-llama-genai-fp16/model.onnx")
	ad = adapter.NewLoRA(config(2, 4, ".*"))
	ad.Weights["model.layers.1.self_attn.v_proj"] = adapter.LoRAWeights{A: adapter.Zeros(16, 2), B: adapter.Zeros(2, 16)}
	sites, _, err = ApplyLoRA(llama, ad)
	if err != nil {
		t.Fatal(err)
	}
	if sites[0].Module != "model.layers.1.attn.v_proj" {
		t.Errorf("got module %q want model.layers.1.attn.v_proj", sites[0].Module)
	}
}

// TestSummary checks the parameter counts and their format.
func TestSummary(t *testing.T) {
	c := models.GPT2Tiny()
	m := builtModels[2].load(t)
	cfg := config(4, 8, ".*c_attn")
	_, sum, err := InjectLoRA(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lora := int64(c.Layers) * (16*4 + 4*48)
	if sum.TrainableParams != lora || sum.AllParams != c.NumParams()+lora {
		t.Errorf("got %d of %d params, want %d of %d", sum.TrainableParams, sum.AllParams, lora, c.NumParams()+lora)
	}
	again, err := Summarize(m)
	if err != nil || again.String() != sum.String() {
		t.Errorf("Summarize: got %v, %v want %v", again, err, sum)
	}
	s := Summary{TrainableParams: 294912, AllParams: 124734720}
	if want := "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364"; s.String() != want {
		t.Errorf("got %q want %q", s, want)
	}

	m = builtModels[2].load(t)
	cfg.TrainableBias = adapter.BiasAll
	cfg.TrainableModules = []string{"transformer.wte.weight"}
	_, sum, err = InjectLoRA(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	extra := map[string]bool{}
	for _, name := range sum.Extra {
		extra[name] = true
	}
	if !extra["transformer.wte.weight"] || !extra["transformer.h.0.mlp.c_fc.bias"] || extra["transformer.h.0.mlp.c_fc.weight"] {
		t.Errorf("extras: got %v", sum.Extra)
	}
	var want int64 = lora
	for _, name := range sum.Extra {
		want += graph.NumElements(m.Initializer(name).Dims)
	}
	if sum.TrainableParams != want {
		t.Errorf("trainable with extras: got %d want %d", sum.TrainableParams, want)
	}
}
