package adapter

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

func TestLoRAScaling(t *testing.T) {
	tests := []struct {
		r      int
		alpha  float64
		rslora bool
		want   float64
	}{
		{8, 8, false, 1},
		{8, 16, false, 2},
		{16, 8, true, 2},
		{4, 32, true, 16},
		{3, 1, false, 1.0 / 3},
	}
	for i, test := range tests {
		c := DefaultLoRAConfig(".*")
		c.R, c.Alpha, c.UseRSLoRA = test.r, test.alpha, test.rslora
		if got := c.Scaling(); math.Abs(got-test.want) > 1e-12 {
			t.Errorf("test %d: got %v want %v", i, got, test.want)
		}
	}
}

func TestLoRAPatterns(t *testing.T) {
	c := DefaultLoRAConfig(".*proj")
	c.R, c.Alpha = 8, 16
	c.RankPattern = map[string]int{`layers\.1\.self_attn\.q_proj`: 4, "v_proj": 2}
	c.AlphaPattern = map[string]float64{"v_proj": 1}
	tests := []struct {
		module  string
		r       int
		scaling float64
	}{
		{"model.layers.0.self_attn.q_proj", 8, 2},
		{"model.layers.1.self_attn.q_proj", 4, 4},
		{"model.layers.0.self_attn.v_proj", 2, 0.5},
		{"model.layers.0.self_attn.xv_proj", 8, 2}, // keys match whole segments
	}
	for i, test := range tests {
		if got := c.RankFor(test.module); got != test.r {
			t.Errorf("test %d: RankFor(%s): got %d want %d", i, test.module, got, test.r)
		}
		if got := c.ScalingFor(test.module); got != test.scaling {
			t.Errorf("test %d: ScalingFor(%s): got %v want %v", i, test.module, got, test.scaling)
		}
	}
}

func TestLoRAConfigValidate(t *testing.T) {
	tests := []struct {
		reason string
		edit   func(c *LoRAConfig)
		want   string
	}{
		{"defaults are valid", func(c *LoRAConfig) {}, ""},
		{"zero value", func(c *LoRAConfig) { *c = LoRAConfig{TargetModules: []string{"x"}} }, "r must be positive"},
		{"negative alpha", func(c *LoRAConfig) { c.Alpha = -1 }, "lora_alpha must be positive"},
		{"dropout 1", func(c *LoRAConfig) { c.Dropout = 1 }, "lora_dropout must be in [0, 1)"},
		{"no targets", func(c *LoRAConfig) { c.TargetModules = nil }, "target_modules is empty"},
		{"bad target regex", func(c *LoRAConfig) { c.TargetModules = []string{"(q"} }, `target_modules: bad regex "(q"`},
		{"bad trainable regex", func(c *LoRAConfig) { c.TrainableModules = []string{"["} }, "trainable_modules: bad regex"},
		{"bad bias", func(c *LoRAConfig) { c.TrainableBias = "some" }, "trainable_bias must be none, lora or all"},
		{"bias lora", func(c *LoRAConfig) { c.TrainableBias = BiasLoRA }, ""},
		{"float64 dtype", func(c *LoRAConfig) { c.DType = dtype.Float64 }, "dtype must be float32, float16 or bfloat16"},
		{"bfloat16 dtype", func(c *LoRAConfig) { c.DType = dtype.BFloat16 }, ""},
		{"tensor parallel -2", func(c *LoRAConfig) { c.TensorParallelDegree = -2 }, "tensor_parallel_degree"},
		{"tensor parallel 4", func(c *LoRAConfig) { c.TensorParallelDegree = 4 }, ""},
		{"bad init", func(c *LoRAConfig) { c.InitLoRAWeights = "corda" }, "init_lora_weights must be kaiming, gaussian, pissa, pissa_niter_N, olora or loftq"},
		{"loftq init", func(c *LoRAConfig) { c.InitLoRAWeights = InitLoftQ }, ""},
		{"bad pissa niter", func(c *LoRAConfig) { c.InitLoRAWeights = "pissa_niter_0" }, "pissa_niter_N"},
		{"gaussian init", func(c *LoRAConfig) { c.InitLoRAWeights = InitGaussian }, ""},
		{"enable list without head_dim", func(c *LoRAConfig) { c.EnableLoRAList.All = []bool{true, false, true} }, "enable_lora_list needs head_dim"},
		{"enable list with head_dim", func(c *LoRAConfig) { c.EnableLoRAList.All = []bool{true, false, true}; c.HeadDim = 64 }, ""},
		{"both enable forms", func(c *LoRAConfig) {
			c.EnableLoRAList = EnableLoRAList{All: []bool{true}, PerTarget: [][]bool{{true}}}
			c.HeadDim = 8
		}, "not both"},
		{"too many enable entries", func(c *LoRAConfig) { c.EnableLoRAList.PerTarget = [][]bool{nil, nil}; c.HeadDim = 8 }, "2 entries for 1 target modules"},
		{"rank pattern zero", func(c *LoRAConfig) { c.RankPattern = map[string]int{"q": 0} }, `rank_pattern["q"] must be positive`},
		{"alpha pattern bad key", func(c *LoRAConfig) { c.AlphaPattern = map[string]float64{"(": 1} }, "alpha_pattern: bad key"},
		{"negative layer", func(c *LoRAConfig) { c.LayersToTransform = []int{-1} }, "layers_to_transform"},
		{"negative lora+ scale", func(c *LoRAConfig) { c.LoRAPlusScale = -1 }, "lora_plus_scale"},
	}
	for i, test := range tests {
		c := DefaultLoRAConfig(`.*q_proj`)
		test.edit(&c)
		if err := errContains(c.Validate(), test.want); err != nil {
			t.Errorf("test %d (%s): %v", i, test.reason, err)
		}
	}
}

func TestEnableLoRAListJSON(t *testing.T) {
	tests := []struct {
		in   string
		want EnableLoRAList
		out  string
	}{
		{`null`, EnableLoRAList{}, `null`},
		{`[]`, EnableLoRAList{}, `null`},
		{`[true, false, true]`, EnableLoRAList{All: []bool{true, false, true}}, `[true,false,true]`},
		{`[[true, false, true], null]`, EnableLoRAList{PerTarget: [][]bool{{true, false, true}, nil}}, `[[true,false,true],null]`},
		{`[null, [false, true]]`, EnableLoRAList{PerTarget: [][]bool{nil, {false, true}}}, `[null,[false,true]]`},
	}
	for i, test := range tests {
		var got EnableLoRAList
		if err := json.Unmarshal([]byte(test.in), &got); err != nil {
			t.Fatalf("test %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, test.want) {
			t.Errorf("test %d: got %+v want %+v", i, got, test.want)
		}
		out, _ := json.Marshal(got)
		if string(out) != test.out {
			t.Errorf("test %d: marshal: got %s want %s", i, out, test.out)
		}
	}
	for _, bad := range []string{`{}`, `[1, 2]`, `[true, [true]]`, `"x"`} {
		var got EnableLoRAList
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("%s: got %+v and no error", bad, got)
		}
	}
}

func TestEnableFor(t *testing.T) {
	c := DefaultLoRAConfig(`.*qkv_proj`, `.*o_proj`)
	c.HeadDim = 4
	c.EnableLoRAList.PerTarget = [][]bool{{true, false, true}}
	if got := c.EnableFor("model.layers.0.attn.qkv_proj"); !reflect.DeepEqual(got, []bool{true, false, true}) {
		t.Errorf("qkv_proj: got %v want [true false true]", got)
	}
	if got := c.EnableFor("model.layers.0.attn.o_proj"); got != nil {
		t.Errorf("o_proj: got %v want nil", got)
	}
}
