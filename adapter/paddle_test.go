package adapter

import (
	"encoding/json"
	"github.com/peftonnx/peftonnx/dtype"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/internal/pickle"
	"github.com/peftonnx/peftonnx/npy"
)

// paddleLoRA returns a LoRA adapter that PaddleNLP's layout can hold: two
// modules in float32 and float16, one in bfloat16, a bias and the weight
// of a LoRA module (nn.Linear's [out, in]).
func paddleLoRA() *Adapter {
	a := sampleLoRA()
	delete(a.Extra, "lm_head.weight")
	a.LoRA.TrainableModules = []string{`.*q_proj`}
	a.LoRA.LoRAPlusScale = 2
	a.Extra["model.layers.0.self_attn.q_proj.weight"] = NewTensor([]int64{4, 3}, seq(12, -0.5, 0.125))
	up := LoRAWeights{A: NewTensor([]int64{3, 2}, seq(6, 1, -0.25)), B: NewTensor([]int64{2, 2}, seq(4, -1, 0.5))}
	up.A.DType, up.B.DType = dtype.BFloat16, dtype.BFloat16
	a.LoRA.TargetModules = append(a.LoRA.TargetModules, `.*up_proj`)
	a.Weights["model.layers.0.mlp.up_proj"] = up
	return a
}

// paddlePrefixProjection returns a prefix adapter with a projection and as
// many key/value heads as query heads, which PaddleNLP's layout can hold.
func paddlePrefixProjection() *Adapter {
	a := samplePrefix(true)
	a.Prefix.MultiQueryGroupNum = 0
	a.Prefix.NumAttentionHeads = 2 // head_dim 4, kv_heads·head_dim = hidden 8
	a.Prefix.DType = dtype.Float32
	tw := int64(a.Prefix.TableWidth()) // 2·2·2·4 = 32
	a.Projection.W2 = NewTensor([]int64{5, tw}, seq(int(5*tw), 1, -0.03125))
	a.Projection.B2 = NewTensor([]int64{tw}, seq(int(tw), 0, 1))
	return a
}

// TestSavePaddleDirRoundTrip saves adapters in PaddleNLP's layout and loads
// them back: the same config (lora_plus_scale 0 is written as PaddleNLP's
// 1, a tensor-parallel degree as -1, merged) and bit-identical weights.
func TestSavePaddleDirRoundTrip(t *testing.T) {
	fusedCfg := DefaultLoRAConfig(`.*qkv_proj`)
	fusedCfg.R, fusedCfg.Alpha, fusedCfg.UseRSLoRA, fusedCfg.Dropout = 4, 16, true, 0.05
	fusedCfg.EnableLoRAList = EnableLoRAList{PerTarget: [][]bool{{true, false, true}}}
	fusedCfg.HeadDim, fusedCfg.DType, fusedCfg.TensorParallelDegree = 2, dtype.BFloat16, 2
	fusedCfg.InitLoRAWeights, fusedCfg.MergeWeights = InitGaussian, true
	fusedCfg.FanInFanOut, fusedCfg.Revision, fusedCfg.InferenceMode = true, "main", true
	fused := NewLoRA(fusedCfg)
	fused.Weights["model.layers.0.attn.qkv_proj"] = LoRAWeights{
		A: NewTensor([]int64{6, 8}, seq(48, -3, 0.1)),
		B: NewTensor([]int64{4, 8}, seq(32, 1e-3, 7e-4)),
	}
	tests := []struct {
		name   string
		a      *Adapter
		adjust func(c *LoRAConfig) // what the written config reads back as
		files  []string
	}{
		{"lora", paddleLoRA(), nil, []string{PaddleLoRAConfigFile, PaddleLoRAWeightsFile}},
		{"lora fused rslora", fused, func(c *LoRAConfig) { c.LoRAPlusScale, c.TensorParallelDegree = 1, -1 }, []string{PaddleLoRAConfigFile, PaddleLoRAWeightsFile}},
		{"prefix", samplePrefix(false), nil, []string{PaddlePrefixConfigFile, PaddlePrefixWeightsFile, PaddlePreCachesFile}},
		{"prefix projection", paddlePrefixProjection(), nil, []string{PaddlePrefixConfigFile, PaddlePrefixWeightsFile, PaddlePreCachesFile}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if err := SavePaddleDir(dir, test.a); err != nil {
				t.Fatal(err)
			}
			got, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := *test.a
			if test.adjust != nil {
				c := *want.LoRA
				test.adjust(&c)
				want.LoRA = &c
			}
			if !reflect.DeepEqual(got.LoRA, want.LoRA) || !reflect.DeepEqual(got.Prefix, want.Prefix) {
				t.Errorf("config changed:\ngot  %+v %+v\nwant %+v %+v", got.LoRA, got.Prefix, want.LoRA, want.Prefix)
			}
			sameAdapter(t, &want, got)
			var names []string
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				names = append(names, e.Name())
			}
			slices.Sort(test.files)
			if !slices.Equal(names, test.files) {
				t.Errorf("got files %v, want %v (no temporary files)", names, test.files)
			}
		})
	}
}

// TestSavePaddleDirLayout checks the keys and layouts SavePaddleDir writes
// against PaddleNLP's: factors as in the graph, a LoRA module's weight as
// paddle's [in, out], the prefix table's columns keys first, and
// pre_caches.npy as [layers, 2, kv_heads, P, head_dim].
func TestSavePaddleDirLayout(t *testing.T) {
	dir := t.TempDir()
	a := paddleLoRA()
	if err := SavePaddleDir(dir, a); err != nil {
		t.Fatal(err)
	}
	tensors, err := ReadPdparams(filepath.Join(dir, PaddleLoRAWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*Tensor{"model.layers.0.self_attn.q_proj.bias": a.Extra["model.layers.0.self_attn.q_proj.bias"]}
	for _, m := range a.Modules() {
		want[m+".lora_A"], want[m+".lora_B"] = a.Weights[m].A, a.Weights[m].B
	}
	w := a.Extra["model.layers.0.self_attn.q_proj.weight"]
	want["model.layers.0.self_attn.q_proj.weight"] = w.Transpose()
	if !slices.Equal(sortedKeys(tensors), sortedKeys(want)) {
		t.Fatalf("keys %v, want %v", sortedKeys(tensors), sortedKeys(want))
	}
	for k, wt := range want {
		if err := sameTensor(wt, tensors[k]); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if got := tensors["model.layers.0.self_attn.q_proj.weight"].Shape; !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("q_proj.weight stored as %v, want paddle's [in 3, out 4]", got)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, PaddleLoRAConfigFile))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"r": 2.0, "lora_alpha": 4.0, "scaling": 2.0, "lora_plus_scale": 2.0, "trainable_bias": "lora",
		"tensor_parallel_degree": -1.0, "dtype": "float32", "head_dim": nil, "base_model_name_or_path": "tiny-llama"} {
		if !reflect.DeepEqual(cfg[k], v) {
			t.Errorf("lora_config.json %q = %v, want %v", k, cfg[k], v)
		}
	}

	// The prefix: L 2, kv_heads 2, head_dim 2. peftonnx's column
	// ((l·2 + kind)·2 + h)·2 + d is PaddleNLP's ((kind·2 + l)·2 + h)·2 + d.
	p := samplePrefix(false)
	pdir := t.TempDir()
	if err := SavePaddleDir(pdir, p); err != nil {
		t.Fatal(err)
	}
	pt, err := ReadPdparams(filepath.Join(pdir, PaddlePrefixWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	table := pt[paddlePrefixKey]
	if table == nil || len(pt) != 1 {
		t.Fatalf("prefix state dict keys %v, want [0.weight]", sortedKeys(pt))
	}
	caches, err := npy.ReadFile(filepath.Join(pdir, PaddlePreCachesFile))
	if err != nil {
		t.Fatal(err)
	}
	if caches.DType.String() != "uint16" || !slices.Equal(caches.Shape, []int64{2, 2, 2, 3, 2}) {
		t.Fatalf("pre_caches.npy is %s, want uint16 (bfloat16 bits) [2 2 2 3 2]", caches)
	}
	cv, _ := npy.Values[uint16](caches)
	for r := 0; r < 3; r++ {
		for l := 0; l < 2; l++ {
			for kind := 0; kind < 2; kind++ {
				for h := 0; h < 2; h++ {
					for d := 0; d < 2; d++ {
						ours := p.Prompt.Data[r*16+((l*2+kind)*2+h)*2+d]
						if theirs := table.Data[r*16+((kind*2+l)*2+h)*2+d]; theirs != ours {
							t.Errorf("row %d layer %d kind %d head %d d %d: paddle table has %v, want %v", r, l, kind, h, d, theirs, ours)
						}
						if c := cv[(((l*2+kind)*2+h)*3+r)*2+d]; c != bf16Bits(ours) {
							t.Errorf("pre_caches[%d,%d,%d,%d,%d] = %#04x, want %#04x", l, kind, h, r, d, c, bf16Bits(ours))
						}
					}
				}
			}
		}
	}
}

func bf16Bits(v float32) uint16 { return uint16(math.Float32bits(v) >> 16) }

// TestSavePaddleDirPreCachesProjection checks pre_caches.npy of a prefix
// with a projection against tanh(E·W1 + B1)·W2 + B2 worked out here.
func TestSavePaddleDirPreCachesProjection(t *testing.T) {
	a := paddlePrefixProjection()
	dir := t.TempDir()
	if err := SavePaddleDir(dir, a); err != nil {
		t.Fatal(err)
	}
	caches, err := npy.ReadFile(filepath.Join(dir, PaddlePreCachesFile))
	if err != nil {
		t.Fatal(err)
	}
	cv, err := npy.Values[float32](caches)
	if err != nil || !slices.Equal(caches.Shape, []int64{2, 2, 2, 3, 4}) {
		t.Fatalf("pre_caches.npy is %s (%v), want float32 [2 2 2 3 4]", caches, err)
	}
	p := a.Projection
	for _, e := range []struct{ l, kind, h, r, d int }{{0, 0, 0, 0, 0}, {1, 1, 1, 2, 3}, {0, 1, 0, 1, 2}, {1, 0, 1, 2, 1}} {
		col := ((e.l*2+e.kind)*2+e.h)*4 + e.d
		want := float64(p.B2.Data[col])
		for j := 0; j < 5; j++ {
			s := float64(p.B1.Data[j])
			for i := 0; i < 8; i++ {
				s += float64(a.Prompt.Data[e.r*8+i]) * float64(p.W1.Data[i*5+j])
			}
			want += math.Tanh(s) * float64(p.W2.Data[j*32+col])
		}
		got := cv[(((e.l*2+e.kind)*2+e.h)*3+e.r)*4+e.d]
		if math.Abs(float64(got)-want) > 1e-5*math.Max(1, math.Abs(want)) {
			t.Errorf("pre_caches%v = %v, want %v", e, got, want)
		}
	}
}

// TestSavePaddleDirRefuses checks what PaddleNLP's layout cannot hold; a
// refused save writes nothing.
func TestSavePaddleDirRefuses(t *testing.T) {
	ranked := paddleLoRA()
	ranked.LoRA.RankPattern = map[string]int{"v_proj": 2}
	gqaProj := samplePrefix(true)
	extraPrefix := samplePrefix(false)
	extraPrefix.Extra["x"] = NewTensor([]int64{1}, []float32{1})
	tests := []struct {
		name string
		a    *Adapter
		want string
	}{
		{"2-D extra of a module without LoRA", sampleLoRA(), `"lm_head.weight": a 2-D trainable tensor of a module without LoRA`},
		{"rank pattern", ranked, `lora_config.json: "rank_pattern": PaddleNLP's LoRAConfig has no such field`},
		{"projection with grouped-query heads", gqaProj, "a projection with grouped-query heads has no PaddleNLP layout"},
		{"prefix extra", extraPrefix, `"x": PaddleNLP's prefix state dict holds the prefix encoder only`},
		{"invalid", NewLoRA(LoRAConfig{}), "lora config: r must be positive"},
	}
	for _, test := range tests {
		dir := filepath.Join(t.TempDir(), "out")
		err := SavePaddleDir(dir, test.a)
		if e := errContains(err, test.want); e != nil {
			t.Errorf("%s: %v", test.name, e)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s: the refused save left %d files", test.name, len(entries))
		}
	}
	dir := t.TempDir()
	if err := SaveDir(dir, paddleLoRA()); err != nil {
		t.Fatal(err)
	}
	err := SavePaddleDir(dir, paddleLoRA())
	if e := errContains(err, "holds adapter_config.json, which LoadDir reads before PaddleNLP's files"); e != nil {
		t.Error(e)
	}
}

// writePdparams pickles d into dir/name.
func writePdparams(t *testing.T, dir, name string, d *pickle.Dict) {
	t.Helper()
	b, err := pickle.Encode(d, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// arrayOf is a float32 numpy array for tests.
func arrayOf(shape []int64, values []float32) *npy.Array {
	a, err := npy.New(shape, values)
	if err != nil {
		panic(err)
	}
	return a
}

// TestLoadDirPaddleErrors feeds PaddleNLP directories that do not fit:
// tensor-parallel shards, bad keys and shapes, hostile pickles. Each error
// names the directory or the file and the key.
func TestLoadDirPaddleErrors(t *testing.T) {
	const loraConfig = `{"r": 2, "lora_alpha": 4, "target_modules": [".*q_proj"], "tensor_parallel_degree": %s}`
	const prefixConfig = `{"num_prefix_tokens": 3, "num_attention_heads": 2, "num_hidden_layers": 1, "hidden_size": 4, "tensor_parallel_degree": %s}`
	pair := func(extra ...any) *pickle.Dict {
		d := pickle.NewDict()
		d.Set("m.q_proj.lora_A", arrayOf([]int64{3, 2}, seq(6, 0, 1)))
		d.Set("m.q_proj.lora_B", arrayOf([]int64{2, 4}, seq(8, 0, 1)))
		for i := 0; i+1 < len(extra); i += 2 {
			d.Set(extra[i].(string), extra[i+1])
		}
		return d
	}
	onlyA := pickle.NewDict()
	onlyA.Set("m.q_proj.lora_A", arrayOf([]int64{3, 2}, seq(6, 0, 1)))
	tests := []struct {
		name   string
		config string // lora_config.json, or prefix_config.json when it has num_prefix_tokens
		files  map[string]any
		want   string
	}{
		{"shards at degree 2", strings.Replace(loraConfig, "%s", "2", 1),
			map[string]any{"lora_model_state.tp00.pdparams": pair(), "lora_model_state.tp01.pdparams": pair()},
			"tensor_parallel_degree 2: the adapter is saved as 2 tensor-parallel shards (found lora_model_state.tp00.pdparams, lora_model_state.tp01.pdparams); merge the shards into one adapter first"},
		{"degree 2 without shards", strings.Replace(loraConfig, "%s", "4", 1), map[string]any{PaddleLoRAWeightsFile: pair()},
			"tensor_parallel_degree 4: the adapter is saved as 4 tensor-parallel shards (none of them is here)"},
		{"shards without a degree", strings.Replace(loraConfig, "%s", "-1", 1),
			map[string]any{"lora_model_state.tp00_pp00.pdparams": pair(), "lora_model_state.tp00_pp01.pdparams": pair()},
			"no lora_model_state.pdparams but 2 shards (lora_model_state.tp00_pp00.pdparams, lora_model_state.tp00_pp01.pdparams); merge the shards"},
		{"prefix shards", strings.Replace(prefixConfig, "%s", "2", 1), map[string]any{"prefix_model_state.tp01.pdparams": pickle.NewDict()},
			"found prefix_model_state.tp01.pdparams); merge the shards"},
		{"lora_A alone", strings.Replace(loraConfig, "%s", "-1", 1), map[string]any{PaddleLoRAWeightsFile: onlyA},
			`lora_model_state.pdparams: "m.q_proj.lora_A": lora_A without m.q_proj.lora_B`},
		{"rank disagrees", `{"r": 4, "lora_alpha": 4, "target_modules": [".*q_proj"]}`, map[string]any{PaddleLoRAWeightsFile: pair()},
			`lora_model_state.pdparams: "m.q_proj": lora_A is [3 2], want [in, r] with r 4`},
		{"LoRAConv2D", strings.Replace(loraConfig, "%s", "-1", 1), map[string]any{PaddleLoRAWeightsFile: pair("m.conv.lora_A.weight", arrayOf([]int64{1}, []float32{0}))},
			`"m.conv.lora_A.weight": LoRA on a layer other than Linear`},
		{"QAT scale", strings.Replace(loraConfig, "%s", "-1", 1), map[string]any{PaddleLoRAWeightsFile: pair("m.q_proj.weight_quanter._scale", arrayOf([]int64{1}, []float32{0}))},
			`"m.q_proj.weight_quanter._scale": quantization-aware training scales`},
		{"2-D extra", strings.Replace(loraConfig, "%s", "-1", 1), map[string]any{PaddleLoRAWeightsFile: pair("embed.weight", arrayOf([]int64{2, 2}, seq(4, 0, 1)))},
			`"embed.weight": a 2-D trainable tensor of a module without LoRA`},
		{"not an array", strings.Replace(loraConfig, "%s", "-1", 1), map[string]any{PaddleLoRAWeightsFile: pair("step", int64(3))},
			`lora_model_state.pdparams: "step": holds a int, not an array`},
		{"complex numbers", strings.Replace(loraConfig, "%s", "-1", 1),
			map[string]any{PaddleLoRAWeightsFile: []byte("\x80\x02cnumpy\ndtype\nX\x03\x00\x00\x00c16\x89\x88\x87R.")},
			`lora_model_state.pdparams: byte 26: REDUCE: numpy dtype "c16" is not read`},
		{"os.system", strings.Replace(loraConfig, "%s", "-1", 1), map[string]any{PaddleLoRAWeightsFile: []byte("\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.")},
			"lora_model_state.pdparams: byte 2: GLOBAL: the global os.system is outside the subset"},
		{"prefix key", strings.Replace(prefixConfig, "%s", "-1", 1), map[string]any{PaddlePrefixWeightsFile: pair()},
			`prefix_model_state.pdparams: "m.q_proj.lora_A": unexpected key in a prefix state dict: want 0.weight`},
		{"prefix width", strings.Replace(prefixConfig, "%s", "-1", 1), map[string]any{PaddlePrefixWeightsFile: dictOf("0.weight", arrayOf([]int64{3, 4}, seq(12, 0, 1)))},
			`"0.weight": shape [3 4], want [num_prefix_tokens, 8]`},
		{"pre_caches shape", strings.Replace(prefixConfig, "%s", "-1", 1), map[string]any{PaddlePreCachesFile: arrayOf([]int64{1, 2, 2, 3, 1}, seq(12, 0, 1))},
			"pre_caches.npy: shape [1 2 2 3 1], want [1 2 2 3 2] [layers, 2, kv_heads, num_prefix_tokens, head_dim]"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgName := PaddleLoRAConfigFile
			if strings.Contains(test.config, "num_prefix_tokens") {
				cfgName = PaddlePrefixConfigFile
			}
			if err := os.WriteFile(filepath.Join(dir, cfgName), []byte(test.config), 0o644); err != nil {
				t.Fatal(err)
			}
			for name, v := range test.files {
				switch x := v.(type) {
				case *pickle.Dict:
					writePdparams(t, dir, name, x)
				case []byte:
					os.WriteFile(filepath.Join(dir, name), x, 0o644)
				case *npy.Array:
					if err := npy.WriteFile(filepath.Join(dir, name), x); err != nil {
						t.Fatal(err)
					}
				}
			}
			_, err := LoadDir(dir)
			if e := errContains(err, test.want); e != nil {
				t.Error(e)
			}
			if err != nil && !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the directory or file", err)
			}
		})
	}
}

func dictOf(kv ...any) *pickle.Dict {
	d := pickle.NewDict()
	for i := 0; i+1 < len(kv); i += 2 {
		d.Set(kv[i].(string), kv[i+1])
	}
	return d
}

// TestLoadDirPaddleOneShard: at degree 1 a lone tp00 shard is the whole
// adapter; pre_caches.npy alone gives the prefix table.
func TestLoadDirPaddleOneShard(t *testing.T) {
	a := paddleLoRA()
	dir := t.TempDir()
	if err := SavePaddleDir(dir, a); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, PaddleLoRAWeightsFile), filepath.Join(dir, "lora_model_state.tp00.pdparams")); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameAdapter(t, a, got)

	p := paddlePrefixProjection()
	pdir := t.TempDir()
	if err := SavePaddleDir(pdir, p); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(pdir, PaddlePrefixWeightsFile))
	got, err = LoadDir(pdir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Prefix.PrefixProjection || got.Projection != nil || got.Prompt == nil {
		t.Fatalf("from pre_caches.npy alone: got projection %v, prompt %v; want a plain table", got.Projection != nil, got.Prompt != nil)
	}
	table := prefixTable(p)
	if err := sameTensor(table, got.Prompt); err != nil {
		t.Errorf("table from pre_caches.npy: %v", err)
	}
}

// TestPdparamsRoundTrip writes tensors of every dtype and reads them back,
// and joins arrays that protocol 2 split (UnpackBigParamInfor@@).
func TestPdparamsRoundTrip(t *testing.T) {
	tensors := map[string]*Tensor{}
	for i, dt := range []dtype.Type{dtype.Float32, dtype.Float16, dtype.BFloat16, dtype.Float64, dtype.Int64, dtype.Int32, dtype.Int8, dtype.Uint8} {
		x := NewTensor([]int64{2, 3}, seq(6, -2, 1))
		if dt == dtype.Uint8 {
			x = NewTensor([]int64{2, 3}, seq(6, 0, 1))
		}
		x.DType = dt
		tensors[string(rune('a'+i))+"."+dt.String()] = x
	}
	path := filepath.Join(t.TempDir(), "x.pdparams")
	if err := WritePdparams(path, tensors); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPdparams(path)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range tensors {
		if err := sameTensor(want, got[k]); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	d, err := pickle.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := d.Get("c.bfloat16"); v.(*npy.Array).DType.String() != "uint16" {
		t.Errorf("bfloat16 stored as %s, want paddle's uint16", pickle.TypeName(v))
	}
	if v, _ := d.Get(pdparamsNameTable); pickle.TypeName(v) != "dict" {
		t.Errorf("no %s table", pdparamsNameTable)
	}

	split := pickle.NewDict()
	split.Set("w@@.0", arrayOf([]int64{4}, seq(4, 0, 1)))
	split.Set("w@@.1", arrayOf([]int64{2}, seq(2, 4, 1)))
	info := pickle.NewDict()
	info.Set("OriginShape", pickle.NewTuple(int64(2), int64(3)))
	info.Set("slices", pickle.NewList("w@@.0", "w@@.1"))
	split.Set(pdparamsUnpackInfo, dictOf("w", info))
	b, err := pickle.Encode(split, 2)
	if err != nil {
		t.Fatal(err)
	}
	joined, err := DecodePdparams(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensor(NewTensor([]int64{2, 3}, seq(6, 0, 1)), joined["w"]); err != nil || len(joined) != 1 {
		t.Errorf("joined slices: %v (keys %v)", err, sortedKeys(joined))
	}
	info.Set("OriginShape", pickle.NewTuple(int64(7)))
	b, _ = pickle.Encode(split, 2)
	if _, err := DecodePdparams(b); errContains(err, `"w": its slices do not make shape [7]`) != nil {
		t.Errorf("slices of the wrong size: %v", err)
	}
}

// TestSavePaddleDirUndefinedDType: a config and tensors without a dtype
// are written as float32, everywhere.
func TestSavePaddleDirUndefinedDType(t *testing.T) {
	a := samplePrefix(false)
	a.Prefix.DType, a.Prompt.DType = dtype.Undefined, dtype.Undefined
	dir := t.TempDir()
	if err := SavePaddleDir(dir, a); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Prefix.DType != dtype.Float32 || got.Prompt.DType != dtype.Float32 {
		t.Errorf("read back as %s and %s, want float32", got.Prefix.DType, got.Prompt.DType)
	}
	caches, err := npy.ReadFile(filepath.Join(dir, PaddlePreCachesFile))
	if err != nil || caches.DType != dtype.Float32 {
		t.Errorf("pre_caches.npy: %v (%v), want float32", caches, err)
	}
}
