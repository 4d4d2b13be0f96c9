package adapter

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// sameAdapter reports the first difference between two adapters' weights.
func sameAdapter(t *testing.T, want, got *Adapter) {
	t.Helper()
	if !reflect.DeepEqual(want.Modules(), got.Modules()) {
		t.Fatalf("got modules %v want %v", got.Modules(), want.Modules())
	}
	for _, m := range want.Modules() {
		if err := sameTensor(want.Weights[m].A, got.Weights[m].A); err != nil {
			t.Errorf("%s lora_A: %v", m, err)
		}
		if err := sameTensor(want.Weights[m].B, got.Weights[m].B); err != nil {
			t.Errorf("%s lora_B: %v", m, err)
		}
	}
	if !reflect.DeepEqual(sortedKeys(want.Extra), sortedKeys(got.Extra)) {
		t.Fatalf("got extra tensors %v want %v", sortedKeys(got.Extra), sortedKeys(want.Extra))
	}
	for name, w := range want.Extra {
		if err := sameTensor(w, got.Extra[name]); err != nil {
			t.Errorf("extra %s: %v", name, err)
		}
	}
	if (want.Prompt == nil) != (got.Prompt == nil) {
		t.Fatalf("got prompt %v want %v", got.Prompt != nil, want.Prompt != nil)
	}
	if want.Prompt != nil {
		if err := sameTensor(want.Prompt, got.Prompt); err != nil {
			t.Errorf("prompt_embeddings: %v", err)
		}
	}
	if (want.Projection == nil) != (got.Projection == nil) {
		t.Fatalf("got projection %v want %v", got.Projection != nil, want.Projection != nil)
	}
	if p := want.Projection; p != nil {
		q := got.Projection
		for i, pair := range [][2]*Tensor{{p.W1, q.W1}, {p.B1, q.B1}, {p.W2, q.W2}, {p.B2, q.B2}} {
			if err := sameTensor(pair[0], pair[1]); err != nil {
				t.Errorf("projection tensor %d: %v", i, err)
			}
		}
	}
}

// TestSaveLoadDirRoundTrip saves adapters and loads them back: configs
// must be equal and float32 weights bit-identical (float16 and bfloat16
// ones too).
func TestSaveLoadDirRoundTrip(t *testing.T) {
	gqa := DefaultLoRAConfig(`.*qkv_proj`)
	gqa.R, gqa.Alpha, gqa.UseRSLoRA, gqa.Dropout = 4, 16, true, 0.05
	gqa.EnableLoRAList = EnableLoRAList{PerTarget: [][]bool{{true, false, true}}}
	gqa.HeadDim, gqa.DType, gqa.TensorParallelDegree = 2, dtype.BFloat16, 2
	gqa.InitLoRAWeights, gqa.MergeWeights, gqa.LoRAPlusScale = InitGaussian, true, 16
	gqa.RankPattern = map[string]int{"other": 2}
	gqa.AlphaPattern = map[string]float64{"other": 3.5}
	gqa.LayersToTransform, gqa.LayersPattern = []int{0, 2}, []string{"layers"}
	fused := NewLoRA(gqa)
	fused.Weights["model.layers.0.attn.qkv_proj"] = LoRAWeights{
		A: NewTensor([]int64{6, 8}, seq(48, -3, 0.1)), // [in, r·2 enabled]
		B: NewTensor([]int64{4, 8}, seq(32, 1e-3, 7e-4)),
	}
	tests := []struct {
		name string
		a    *Adapter
	}{
		{"lora", sampleLoRA()},
		{"lora fused rslora", fused},
		{"prefix", samplePrefix(false)},
		{"prefix projection", samplePrefix(true)},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if err := SaveDir(dir, test.a); err != nil {
				t.Fatal(err)
			}
			got, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.LoRA, test.a.LoRA) || !reflect.DeepEqual(got.Prefix, test.a.Prefix) {
				t.Errorf("config changed:\ngot  %+v %+v\nwant %+v %+v", got.LoRA, got.Prefix, test.a.LoRA, test.a.Prefix)
			}
			sameAdapter(t, test.a, got)
			entries, _ := os.ReadDir(dir)
			if len(entries) != 2 {
				t.Errorf("got %d files in the adapter dir want 2 (no temporary files)", len(entries))
			}
		})
	}
}

// TestSaveDirGolden pins the exact files SaveDir writes.
func TestSaveDirGolden(t *testing.T) {
	for name, a := range map[string]*Adapter{
		"lora":              sampleLoRA(),
		"prefix":            samplePrefix(false),
		"prefix_projection": samplePrefix(true),
	} {
		dir := t.TempDir()
		if err := SaveDir(dir, a); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{HFConfigFile, HFWeightsFile} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("hf_"+name, f), b)
		}
	}
}

// TestSaveDirLayout checks keys and shapes against PEFT's layout.
func TestSaveDirLayout(t *testing.T) {
	dir := t.TempDir()
	a := sampleLoRA()
	if err := SaveDir(dir, a); err != nil {
		t.Fatal(err)
	}
	tensors, meta, err := ReadSafetensors(filepath.Join(dir, HFWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" {
		t.Errorf("got metadata %v want format pt", meta)
	}
	want := map[string][]int64{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": {2, 3},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": {4, 2},
		"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight": {2, 3},
		"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight": {5, 2},
		"base_model.model.model.layers.0.self_attn.q_proj.bias":          {4},
		"base_model.model.lm_head.weight":                                {2, 3},
	}
	if len(tensors) != len(want) {
		t.Errorf("got %d tensors want %d: %v", len(tensors), len(want), sortedKeys(tensors))
	}
	for key, shape := range want {
		if got := tensors[key]; got == nil || !equalShape(got.Shape, shape) {
			t.Errorf("%s: got %v want shape %v", key, got, shape)
		}
	}
	// lora_A [r, in] is the transpose of the graph's A [in, r].
	ga := a.Weights["model.layers.0.self_attn.q_proj"].A
	fa := tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
	if fa.Data[0*3+1] != ga.Data[1*2+0] {
		t.Errorf("lora_A[0][1] = %v want graph A[1][0] = %v", fa.Data[1], ga.Data[2])
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, HFConfigFile))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for key, v := range map[string]any{
		"peft_type": "LORA", "r": 2.0, "lora_alpha": 4.0, "bias": "lora_only", "fan_in_fan_out": false,
		"init_lora_weights": true, "use_rslora": false, "target_modules": "(?:.*q_proj)|(?:.*v_proj)",
		"base_model_name_or_path": "tiny-llama", "task_type": "CAUSAL_LM", "layers_to_transform": nil,
	} {
		if !reflect.DeepEqual(cfg[key], v) {
			t.Errorf("adapter_config.json %s: got %#v want %#v", key, cfg[key], v)
		}
	}
	if mts, _ := cfg["modules_to_save"].([]any); len(mts) != 1 || mts[0] != "lm_head" {
		t.Errorf("modules_to_save: got %v want [lm_head]", cfg["modules_to_save"])
	}
}

// TestLoadDirPEFT reads a directory laid out as PEFT writes it.
func TestLoadDirPEFT(t *testing.T) {
	dir := t.TempDir()
	config := `{
  "alpha_pattern": {"v_proj": 32},
  "auto_mapping": null,
  "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_dropout": 0.05,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 4,
  "rank_pattern": {"v_proj": 2},
  "revision": null,
  "target_modules": ["v_proj", "q_proj"],
  "task_type": "CAUSAL_LM",
  "use_dora": false,
  "use_rslora": false
}`
	if err := os.WriteFile(filepath.Join(dir, HFConfigFile), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	q := "base_model.model.model.layers.0.self_attn.q_proj"
	v := "base_model.model.model.layers.0.self_attn.v_proj"
	if err := WriteSafetensors(filepath.Join(dir, HFWeightsFile), map[string]*Tensor{
		q + ".lora_A.weight": NewTensor([]int64{4, 3}, seq(12, 0, 1)),
		q + ".lora_B.weight": NewTensor([]int64{5, 4}, seq(20, 0, 1)),
		v + ".lora_A.weight": NewTensor([]int64{2, 3}, seq(6, 0, 1)),
		v + ".lora_B.weight": NewTensor([]int64{5, 2}, seq(10, 0, 1)),
	}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	a, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := a.LoRA
	if c.R != 4 || c.Alpha != 16 || c.Dropout != 0.05 || !c.InferenceMode || c.BaseModelName != "meta-llama/Llama-2-7b-hf" {
		t.Errorf("got config %+v", c)
	}
	if c.MatchTarget("model.layers.0.self_attn.q_proj") != 1 || c.MatchTarget("model.layers.0.self_attn.xq_proj") != -1 || c.MatchTarget("q_proj") != 1 {
		t.Errorf("target names %v do not match as PEFT matches them", c.TargetModules)
	}
	if got := c.ScalingFor("model.layers.0.self_attn.v_proj"); got != 16 {
		t.Errorf("v_proj scaling: got %v want 32/2 = 16", got)
	}
	w := a.Weights["model.layers.0.self_attn.q_proj"]
	if !equalShape(w.A.Shape, []int64{3, 4}) || !equalShape(w.B.Shape, []int64{4, 5}) || w.A.Data[1] != 3 {
		t.Errorf("q_proj: got A %v B %v, A[0][1] %v want [3 4] [4 5] 3", w.A.Shape, w.B.Shape, w.A.Data[1])
	}
	// Saving again keeps PEFT's list form of target_modules.
	out := t.TempDir()
	if err := SaveDir(out, a); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(out, HFConfigFile))
	if !strings.Contains(string(b), `"target_modules": [
    "v_proj",
    "q_proj"
  ]`) {
		t.Errorf("target_modules did not keep PEFT's names:\n%s", b)
	}
}

// TestLoadDirPaddleNLP reads PaddleNLP config files (no weights).
func TestLoadDirPaddleNLP(t *testing.T) {
	tests := []struct {
		file, config string
		check        func(a *Adapter) string
	}{
		{PaddleLoRAConfigFile, `{
  "base_model_name_or_path": "facebook/llama-7b",
  "dtype": "bfloat16",
  "enable_lora_list": [[true, false, true], null],
  "head_dim": 128,
  "lora_alpha": 16,
  "lora_dropout": 0.1,
  "merge_weights": false,
  "r": 8,
  "rslora": true,
  "scaling": 5.656854249492381,
  "target_modules": [".*qkv_proj.*", ".*o_proj.*"],
  "tensor_parallel_degree": -1,
  "trainable_bias": "lora",
  "trainable_modules": [".*norm.*"]
}`, func(a *Adapter) string {
			c := a.LoRA
			switch {
			case c == nil || c.R != 8 || c.Alpha != 16 || !c.UseRSLoRA || c.DType != dtype.BFloat16 || c.HeadDim != 128:
				return "core fields"
			case c.TrainableBias != BiasLoRA || len(c.TrainableModules) != 1 || len(c.TargetModules) != 2:
				return "module fields"
			case !reflect.DeepEqual(c.EnableFor("model.layers.0.self_attn.qkv_proj"), []bool{true, false, true}):
				return "enable_lora_list"
			case len(a.Weights) != 0:
				return "weights"
			}
			return ""
		}},
		{PaddlePrefixConfigFile, `{
  "dtype": null,
  "hidden_size": 4096,
  "multi_query_group_num": 2,
  "num_attention_heads": 32,
  "num_hidden_layers": 28,
  "num_prefix_tokens": 64,
  "prefix_dropout": 0.0,
  "prefix_projection": false,
  "prefix_projection_hidden_size": null,
  "tensor_parallel_degree": -1
}`, func(a *Adapter) string {
			c := a.Prefix
			if c == nil || c.NumPrefixTokens != 64 || c.KVHeads() != 2 || c.HeadDim() != 128 || c.TableWidth() != 28*2*2*128 {
				return "sizes"
			}
			return ""
		}},
	}
	for i, test := range tests {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, test.file), []byte(test.config), 0o644); err != nil {
			t.Fatal(err)
		}
		a, err := LoadDir(dir)
		if err != nil {
			t.Fatalf("test %d: %v", i, err)
		}
		if what := test.check(a); what != "" {
			t.Errorf("test %d (%s): wrong %s: %+v %+v", i, test.file, what, a.LoRA, a.Prefix)
		}
	}
}

// TestLoadDirPEFTProjectedPrefix: PEFT saves a projected prefix as the
// projected table, which loads as a plain table.
func TestLoadDirPEFTProjectedPrefix(t *testing.T) {
	dir := t.TempDir()
	config := `{"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 2,
	  "token_dim": 8, "num_attention_heads": 2, "num_layers": 3, "num_transformer_submodules": 1,
	  "encoder_hidden_size": 16, "prefix_projection": true, "inference_mode": false}`
	os.WriteFile(filepath.Join(dir, HFConfigFile), []byte(config), 0o644)
	WriteSafetensors(filepath.Join(dir, HFWeightsFile), map[string]*Tensor{"prompt_embeddings": Zeros(2, 3*2*8)}, nil)
	a, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.Prefix.PrefixProjection || a.Prefix.TableWidth() != 48 || a.Projection != nil {
		t.Errorf("got %+v want a plain table of width 48", a.Prefix)
	}
}

func TestLoadDirErrors(t *testing.T) {
	loraCfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["q"]}`
	m := "base_model.model.l.q"
	a2 := NewTensor([]int64{2, 3}, seq(6, 0, 1))
	b2 := NewTensor([]int64{4, 2}, seq(8, 0, 1))
	tests := []struct {
		reason  string
		config  string
		file    string // config file name; HFConfigFile if empty
		tensors map[string]*Tensor
		want    string
	}{
		{"lora_A without lora_B", loraCfg, "", map[string]*Tensor{m + ".lora_A.weight": a2},
			`adapter_model.safetensors: "base_model.model.l.q.lora_A.weight": lora_A without base_model.model.l.q.lora_B.weight`},
		{"lora_B without lora_A", loraCfg, "", map[string]*Tensor{m + ".lora_B.weight": b2}, "lora_B without"},
		{"rank mismatch", `{"peft_type": "LORA", "r": 4, "target_modules": ["q"]}`, "", map[string]*Tensor{m + ".lora_A.weight": a2, m + ".lora_B.weight": b2},
			`"base_model.model.l.q.lora_A.weight": shape [2 3] has rank 2, but the config's r is 4`},
		{"B rank mismatch", loraCfg, "", map[string]*Tensor{m + ".lora_A.weight": a2, m + ".lora_B.weight": Zeros(4, 3)}, `lora_B.weight": shape [4 3] has rank 3`},
		{"1-D lora_A", loraCfg, "", map[string]*Tensor{m + ".lora_A.weight": Zeros(2), m + ".lora_B.weight": b2}, "shape [2], want [r, in]"},
		{"foreign key", loraCfg, "", map[string]*Tensor{"model.l.q.weight": a2}, `"model.l.q.weight": LoRA keys start with "base_model.model."`},
		{"adapter-named key", loraCfg, "", map[string]*Tensor{m + ".lora_A.default.weight": a2}, "unexpected LoRA key"},
		{"embedding A alone", loraCfg, "", map[string]*Tensor{m + ".lora_embedding_A": a2}, "lora_embedding_A without base_model.model.l.q.lora_embedding_B"},
		{"DoRA magnitude alone", loraCfg, "", map[string]*Tensor{m + ".lora_A.weight": a2, m + ".lora_B.weight": Zeros(4, 2), "base_model.model.other.lora_magnitude_vector": Zeros(2)}, "which has no lora_A and lora_B"},
		{"no LoRA weights", loraCfg, "", map[string]*Tensor{}, "no LoRA weights"},
		{"no weights file", loraCfg, "", nil, "no adapter_model.safetensors beside adapter_config.json"},
		{"bad JSON", `{"peft_type": `, "", nil, "adapter_config.json: not a JSON object"},
		{"unknown peft type", `{"peft_type": "IA3"}`, "", nil, `"peft_type": "IA3" is not supported`},
		{"no peft type", `{"r": 8}`, "", nil, `"peft_type": missing`},
		{"bad field type", `{"peft_type": "LORA", "r": "eight"}`, "", nil, `adapter_config.json: "r": want an integer, got "eight"`},
		{"fractional r", `{"peft_type": "LORA", "r": 2.5}`, "", nil, `"r": want an integer, got 2.5`},
		{"invalid config", `{"peft_type": "LORA", "r": 0, "target_modules": ["q"]}`, "", nil, "adapter_config.json: lora config: r must be positive, got 0"},
		{"bad bias", `{"peft_type": "LORA", "bias": "some", "target_modules": "q"}`, "", nil, `"bias": want none, lora_only or all`},
		{"dora without magnitude", `{"peft_type": "LORA", "use_dora": true, "r": 2, "target_modules": "q"}`, "",
			map[string]*Tensor{"base_model.model.q.lora_A.weight": Zeros(2, 4), "base_model.model.q.lora_B.weight": Zeros(4, 2)}, "has no lora_magnitude_vector"},
		{"magnitude without dora", `{"peft_type": "LORA", "r": 2, "target_modules": "q"}`, "",
			map[string]*Tensor{"base_model.model.q.lora_A.weight": Zeros(2, 4), "base_model.model.q.lora_B.weight": Zeros(4, 2), "base_model.model.q.lora_magnitude_vector.weight": Zeros(4)}, "the config has no use_dora"},
		{"lora_bias", `{"peft_type": "LORA", "lora_bias": true, "target_modules": "q"}`, "", nil, "a bias on lora_B is not supported"},
		{"enc-dec prefix", `{"peft_type": "PREFIX_TUNING", "num_transformer_submodules": 2}`, "", nil, "encoder-decoder"},
		{"prefix shape", `{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 2, "token_dim": 4, "num_attention_heads": 2, "num_layers": 1}`, "",
			map[string]*Tensor{"prompt_embeddings": Zeros(2, 9)}, `"prompt_embeddings": shape [2 9], want [2 8]`},
		{"prefix missing table", `{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 2, "token_dim": 4, "num_attention_heads": 2, "num_layers": 1}`, "",
			map[string]*Tensor{"base_model.model.x": Zeros(1)}, `"prompt_embeddings": missing`},
		{"prefix stray key", `{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 2, "token_dim": 4, "num_attention_heads": 2, "num_layers": 1}`, "",
			map[string]*Tensor{"prompt_embeddings": Zeros(2, 8), "stray": Zeros(1)}, `"stray": unexpected key in a prefix adapter`},
		{"paddle variant", `{"r": 8, "target_modules": ["q"], "pissa": true}`, PaddleLoRAConfigFile, nil, `lora_config.json: "pissa": this LoRA variant is not supported`},
	}
	for i, test := range tests {
		dir := t.TempDir()
		name := test.file
		if name == "" {
			name = HFConfigFile
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(test.config), 0o644); err != nil {
			t.Fatal(err)
		}
		if test.tensors != nil {
			if err := WriteSafetensors(filepath.Join(dir, HFWeightsFile), test.tensors, nil); err != nil {
				t.Fatal(err)
			}
		}
		_, err := LoadDir(dir)
		if err := errContains(err, test.want); err != nil {
			t.Errorf("test %d (%s): %v", i, test.reason, err)
		}
		if err != nil && !strings.Contains(err.Error(), dir) {
			t.Errorf("test %d (%s): error %q does not name the directory", i, test.reason, err)
		}
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: got %v want an error wrapping os.ErrNotExist", err)
	}
	empty := t.TempDir()
	if err := errContains(func() error { _, err := LoadDir(empty); return err }(), "no adapter_config.json, lora_config.json or prefix_config.json"); err != nil {
		t.Errorf("empty dir: %v", err)
	}
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, HFConfigFile), []byte(loraCfg), 0o644)
	os.WriteFile(filepath.Join(bin, "adapter_model.bin"), []byte("pickle"), 0o644)
	if err := errContains(func() error { _, err := LoadDir(bin); return err }(), "adapter_model.bin (pickle) is not supported"); err != nil {
		t.Errorf("pickle weights: %v", err)
	}
}

// TestSaveDirLeavesNothingOnError checks that failed saves leave neither
// partial nor temporary files, and that existing files stay as they were.
func TestSaveDirLeavesNothingOnError(t *testing.T) {
	root := t.TempDir()
	invalid := sampleLoRA()
	invalid.LoRA.R = 3
	if err := SaveDir(filepath.Join(root, "new"), invalid); err == nil {
		t.Fatal("invalid adapter: got no error")
	}
	if _, err := os.Stat(filepath.Join(root, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("invalid adapter: the directory was created")
	}

	dir := filepath.Join(root, "existing")
	if err := SaveDir(dir, sampleLoRA()); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, HFWeightsFile))
	unencodable := sampleLoRA()
	unencodable.Extra["lm_head.weight"].DType = dtype.Int8 // 1.5 is not an int8
	unencodable.Extra["lm_head.weight"].Data[0] = 1.5
	if err := errContains(SaveDir(dir, unencodable), `"base_model.model.lm_head.weight": value 1.5 at index 0 is not a int8`); err != nil {
		t.Error(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, HFWeightsFile))
	if string(before) != string(after) {
		t.Errorf("a failed save changed the existing weights")
	}
	blocked := filepath.Join(root, "blocked")
	os.MkdirAll(filepath.Join(blocked, HFWeightsFile), 0o755)
	if err := errContains(SaveDir(blocked, sampleLoRA()), "is not a regular file"); err != nil {
		t.Error(err)
	}
	for _, d := range []string{dir, blocked} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("%s: temporary file %s left behind", d, e.Name())
			}
		}
	}
	if _, err := os.Stat(filepath.Join(blocked, HFConfigFile)); err == nil {
		t.Errorf("blocked save wrote %s", HFConfigFile)
	}
}

func TestAdapterValidate(t *testing.T) {
	tests := []struct {
		reason string
		edit   func(a *Adapter)
		want   string
	}{
		{"valid", func(a *Adapter) {}, ""},
		{"no config", func(a *Adapter) { a.LoRA = nil }, "adapter has no config"},
		{"both configs", func(a *Adapter) { a.Prefix = &PrefixConfig{} }, "both a LoRA and a prefix config"},
		{"wrong rank", func(a *Adapter) { a.LoRA.R = 4 }, `"model.layers.0.self_attn.q_proj": lora_A is [3 2], want [in, r] with r 4`},
		{"data mismatch", func(a *Adapter) { a.Weights["x"] = LoRAWeights{A: &Tensor{Shape: []int64{2, 2}}, B: Zeros(2, 2)} }, `"x": lora_A: shape [2 2] holds 4 values, data has 0`},
		{"nil B", func(a *Adapter) { a.Weights["x"] = LoRAWeights{A: Zeros(2, 2)} }, `"x": lora_B: tensor is nil`},
		{"prompt in LoRA", func(a *Adapter) { a.Prompt = Zeros(1) }, "a LoRA adapter holds no prompt embeddings"},
		{"bad extra", func(a *Adapter) { a.Extra["e"] = &Tensor{Shape: []int64{-1}} }, `"e": negative dimension`},
	}
	for i, test := range tests {
		a := sampleLoRA()
		test.edit(a)
		if err := errContains(a.Validate(), test.want); err != nil {
			t.Errorf("test %d (%s): %v", i, test.reason, err)
		}
	}
	prefixTests := []struct {
		reason string
		edit   func(a *Adapter)
		want   string
	}{
		{"valid", func(a *Adapter) {}, ""},
		{"no prompt", func(a *Adapter) { a.Prompt = nil }, `"prompt_embeddings": missing`},
		{"no projection", func(a *Adapter) { a.Projection = nil }, "projection weights are missing"},
		{"bad W2", func(a *Adapter) { a.Projection.W2 = Zeros(5, 15) }, "W2 has shape [5 15], want [5 16]"},
		{"projection off", func(a *Adapter) { a.Prefix.PrefixProjection = false }, `"prompt_embeddings": shape [3 8], want [3 16]`},
		{"LoRA weights", func(a *Adapter) { a.Weights = map[string]LoRAWeights{"x": {}} }, "a prefix adapter holds no LoRA weights"},
	}
	for i, test := range prefixTests {
		a := samplePrefix(true)
		test.edit(a)
		if err := errContains(a.Validate(), test.want); err != nil {
			t.Errorf("prefix test %d (%s): %v", i, test.reason, err)
		}
	}
}

func TestLoadSaveDispatch(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a.onnx_adapter")
	a := sampleLoRA()
	if err := Save(file, a); err != nil {
		t.Fatal(err)
	}
	if err := Save(filepath.Join(dir, "hf"), a); err != nil {
		t.Fatal(err)
	}
	fromFile, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := Load(filepath.Join(dir, "hf"))
	if err != nil {
		t.Fatal(err)
	}
	sameAdapter(t, a, fromDir)
	sameAdapter(t, a, fromFile)
	if fromFile.LoRA.R != 2 || fromFile.LoRA.Scaling() != 1 {
		t.Errorf("from .onnx_adapter: got r %d scaling %v want 2 and 1", fromFile.LoRA.R, fromFile.LoRA.Scaling())
	}
	if err := errContains(Save(filepath.Join(dir, "p.onnx_adapter"), samplePrefix(false)), "holds LoRA adapters only"); err != nil {
		t.Error(err)
	}
}
