package adapter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// TestHFModuleKeysRoundTrip reads a PEFT config with target_modules
// "all-linear", exclude_modules as names, rank_pattern, alpha_pattern,
// layers_to_transform, layers_pattern and modules_to_save, checks what
// each means, writes it back and reads the same config again; the file
// written spells the keys as PEFT does.
func TestHFModuleKeysRoundTrip(t *testing.T) {
	dir := t.TempDir()
	config := `{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": "all-linear",
  "exclude_modules": ["mlp.down_proj", "lm_head"], "rank_pattern": {"v_proj": 2}, "alpha_pattern": {"v_proj": 16},
  "layers_to_transform": [0, 2], "layers_pattern": "layers", "modules_to_save": ["score"]}`
	if err := os.WriteFile(filepath.Join(dir, HFConfigFile), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, _, err := loadDirConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.(*LoRAConfig)
	a := &Adapter{LoRA: c}
	if !slices.Equal(c.TargetModules, []string{AllLinear}) {
		t.Errorf("target_modules: got %q", c.TargetModules)
	}
	for module, want := range map[string]bool{"model.layers.0.mlp.down_proj": true, "lm_head": true, "model.layers.0.mlp.xdown_proj": false, "model.layers.0.mlp.up_proj": false} {
		if c.Excluded(module) != want {
			t.Errorf("Excluded(%q) = %v, want %v", module, !want, want)
		}
	}
	if c.RankFor("model.layers.3.self_attn.v_proj") != 2 || c.ScalingFor("model.layers.3.self_attn.v_proj") != 8 || c.ScalingFor("model.layers.3.self_attn.q_proj") != 2 {
		t.Errorf("rank/alpha pattern: r %d, scaling v %v q %v", c.RankFor("model.layers.3.self_attn.v_proj"), c.ScalingFor("model.layers.3.self_attn.v_proj"), c.ScalingFor("model.layers.3.self_attn.q_proj"))
	}
	if !slices.Equal(c.LayersToTransform, []int{0, 2}) || !slices.Equal(c.LayersPattern, []string{"layers"}) || !slices.Equal(c.TrainableModules, ModuleTargets("score")) {
		t.Errorf("layers %v pattern %v modules_to_save %v", c.LayersToTransform, c.LayersPattern, c.TrainableModules)
	}
	out := t.TempDir()
	b, err := loraConfigJSON(c, modulesToSave(a), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, HFConfigFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var written map[string]any
	if err := json.Unmarshal(b, &written); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"target_modules": "all-linear", "exclude_modules": []any{"mlp.down_proj", "lm_head"},
		"rank_pattern": map[string]any{"v_proj": 2.0}, "alpha_pattern": map[string]any{"v_proj": 16.0},
		"layers_to_transform": []any{0.0, 2.0}, "layers_pattern": "layers", "modules_to_save": []any{"score"},
	} {
		if !reflect.DeepEqual(written[key], want) {
			t.Errorf("written %s: got %#v, want %#v", key, written[key], want)
		}
	}
	back, _, _, err := loadDirConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("read back\n%+v\nwant\n%+v", back, c)
	}
}
