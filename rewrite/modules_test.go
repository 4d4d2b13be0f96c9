package rewrite

import (
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
)

// TestModuleTargetsMatchBySuffix checks HF PEFT's target_modules
// semantics: a name selects a module equal to it or ending in "."+name,
// and nothing else (not xq_proj, not q_proj.weight).
func TestModuleTargetsMatchBySuffix(t *testing.T) {
	ls := linearsNamed([]string{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.xq_proj", "q_proj", "q_proj.inner", "model.layers.0.self_attn.v_proj", "a.attention.self.query", "a.query"})
	tests := []struct {
		names []string
		want  []string
	}{
		{[]string{"q_proj"}, []string{"model.layers.0.self_attn.q_proj", "q_proj"}},
		{[]string{"self_attn.v_proj", "q_proj"}, []string{"model.layers.0.self_attn.q_proj", "q_proj", "model.layers.0.self_attn.v_proj"}},
		{[]string{"self.query"}, []string{"a.attention.self.query"}},
		{[]string{"a.b(c"}, nil}, // regex characters are literal
	}
	for i, tc := range tests {
		got, err := MatchTargets(ls, adapter.ModuleTargets(tc.names...))
		if tc.want == nil {
			if err == nil {
				t.Errorf("test %d: %v selected %v, want an error", i, tc.names, LinearModules(got))
			}
			continue
		}
		if err != nil || !slices.Equal(LinearModules(got), tc.want) {
			t.Errorf("test %d: %v selected %v (%v), want %v", i, tc.names, LinearModules(got), err, tc.want)
		}
	}
}

// TestAllLinearLeavesOutTheHead checks that adapter.AllLinear selects
// every linear layer but the output head on a causal LM (lm_head), a BERT
// classifier (the classifier producing logits) and the real exports.
func TestAllLinearLeavesOutTheHead(t *testing.T) {
	tests := []struct {
		model testModel
		head  string
	}{
		{builtModels[0], "lm_head"},
		{builtModels[5], "classifier"},
		{realModels[0], "classifier"},
		{realModels[2], "lm_head"},
		{realModels[1], ""}, // GPT2Model has no head: its output is a LayerNorm's
	}
	for _, tc := range tests {
		t.Run(tc.model.name, func(t *testing.T) {
			ls, err := FindLinears(tc.model.load(t))
			if err != nil {
				t.Fatal(err)
			}
			got, err := MatchTargets(ls, []string{adapter.AllLinear})
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, l := range ls {
				if !slices.ContainsFunc(got, func(g Linear) bool { return g.Module == l.Module }) {
					left = append(left, l.Module)
				}
			}
			want := []string{}
			if tc.head != "" {
				want = []string{tc.head}
			}
			if len(left) != len(want) || (len(want) == 1 && left[0] != tc.head) {
				t.Errorf("all-linear left out %v, want %v", left, want)
			}
		})
	}
}

// TestInjectWithModulesAndExclude checks WithModules, its record (the
// config holds full-match regexes, written to adapter_config.json as PEFT's
// names) and ExcludeModules.
func TestInjectWithModulesAndExclude(t *testing.T) {
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(2, 4)
	cfg.ExcludeModules = adapter.ModuleTargets("layers.1.self_attn.v_proj")
	sites, _, err := InjectLoRA(m, cfg, WithModules("q_proj", "v_proj"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range sites {
		got = append(got, s.Module)
	}
	want := []string{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"}
	if !slices.Equal(got, want) {
		t.Errorf("adapted %v, want %v", got, want)
	}
	ad, err := ExtractAdapter(m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ad.LoRA.TargetModules, adapter.ModuleTargets("q_proj", "v_proj")) || !slices.Equal(ad.LoRA.ExcludeModules, cfg.ExcludeModules) {
		t.Errorf("recorded targets %q, exclude %q", ad.LoRA.TargetModules, ad.LoRA.ExcludeModules)
	}
	back := throughHFDir(t, ad)
	if !slices.Equal(back.LoRA.TargetModules, ad.LoRA.TargetModules) || !slices.Equal(back.LoRA.ExcludeModules, ad.LoRA.ExcludeModules) {
		t.Errorf("read back targets %q, exclude %q", back.LoRA.TargetModules, back.LoRA.ExcludeModules)
	}

	m2, _ := models.Llama(models.LlamaTiny())
	cfg = config(2, 4)
	cfg.ExcludeModules = []string{".*"}
	if _, _, err := InjectLoRA(m2, cfg, WithModules("q_proj")); err == nil || !strings.Contains(err.Error(), "exclude_modules") {
		t.Errorf("excluding everything: got %v, want an exclude_modules error", err)
	}
	if _, _, err := InjectPrefix(m2, adapter.PrefixConfig{NumPrefixTokens: 2}, WithModules("q_proj")); err == nil || !strings.Contains(err.Error(), "WithModules") {
		t.Errorf("WithModules on a prefix: got %v", err)
	}
}

// TestInjectHFPatterns checks that a config as HF PEFT writes it is
// applied per module: layers_to_transform with layers_pattern keeps layer
// 1, exclude_modules drops its k_proj, rank_pattern and alpha_pattern set
// v_proj's rank and alpha (and so its A's width and its scale), and the
// others keep r and lora_alpha; an adapter extracted from the model reads
// back, through adapter_config.json, to the same per-module ranks.
func TestInjectHFPatterns(t *testing.T) {
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(4, 8)
	cfg.LayersToTransform, cfg.LayersPattern = []int{1}, []string{"layers"}
	cfg.ExcludeModules = adapter.ModuleTargets("k_proj")
	cfg.RankPattern = map[string]int{"v_proj": 2}
	cfg.AlphaPattern = map[string]float64{"v_proj": 16}
	sites, _, err := InjectLoRA(m, cfg, WithModules("q_proj", "k_proj", "v_proj"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]float64{ // module: r, scale
		"model.layers.1.self_attn.q_proj": {4, 2},
		"model.layers.1.self_attn.v_proj": {2, 8},
	}
	if len(sites) != len(want) {
		t.Fatalf("adapted %d layers, want %v", len(sites), want)
	}
	for _, s := range sites {
		w, ok := want[s.Module]
		a := m.Initializer(s.A)
		if !ok || float64(s.R) != w[0] || s.Scale != w[1] || a == nil || a.Dims[1] != int64(w[0]) {
			t.Errorf("site %s: r %d scale %v A %v, want r %v scale %v", s.Module, s.R, s.Scale, a.GetDims(), w[0], w[1])
		}
	}
	ad, err := ExtractAdapter(m)
	if err != nil {
		t.Fatal(err)
	}
	back := throughHFDir(t, ad)
	for mod, w := range want {
		if back.LoRA.RankFor(mod) != int(w[0]) || back.LoRA.ScalingFor(mod) != w[1] {
			t.Errorf("%s read back: r %d scaling %v, want %v", mod, back.LoRA.RankFor(mod), back.LoRA.ScalingFor(mod), w)
		}
	}
}

// throughHFDir saves ad as an HF PEFT directory and reads it back.
func throughHFDir(t *testing.T, ad *adapter.Adapter) *adapter.Adapter {
	t.Helper()
	dir := t.TempDir()
	if err := adapter.SaveDir(dir, ad); err != nil {
		t.Fatal(err)
	}
	back, err := adapter.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return back
}
