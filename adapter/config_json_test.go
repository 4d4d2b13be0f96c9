package adapter

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// TestConfigJSONKeys: configs read today's snake_case keys and the Go
// field names that earlier versions wrote, and write today's keys only.
func TestConfigJSONKeys(t *testing.T) {
	lora := LoRAConfig{
		R: 4, Alpha: 8, Dropout: 0.1, TargetModules: []string{".*q_proj"}, TrainableModules: []string{".*norm.*"},
		TrainableBias: BiasLoRA, EnableLoRAList: EnableLoRAList{All: []bool{true, false, true}}, HeadDim: 4,
		DType: dtype.BFloat16, TensorParallelDegree: -1, UseRSLoRA: true, InitLoRAWeights: InitGaussian,
		BaseModelName: "llama.onnx", MergeWeights: true, DoQAT: true, LoRAPlusScale: 4, UseQuickLoRA: true,
		FanInFanOut: true, TaskType: "CAUSAL_LM", InferenceMode: true, Revision: "main",
		RankPattern: map[string]int{"q_proj": 2}, AlphaPattern: map[string]float64{"q_proj": 3},
		LayersToTransform: []int{0}, LayersPattern: []string{"layers"},
	}
	prefix := PrefixConfig{
		NumPrefixTokens: 3, NumAttentionHeads: 4, MultiQueryGroupNum: 2, NumHiddenLayers: 2, HiddenSize: 16,
		PrefixProjection: true, PrefixProjectionHiddenSize: 8, PrefixDropout: 0.1, DType: dtype.Float16,
		TensorParallelDegree: 1, TaskType: "CAUSAL_LM", BaseModelName: "llama.onnx", InferenceMode: true, Revision: "v1",
	}
	tests := []struct {
		name string
		json string // as an earlier version wrote it, or today's
		into any
		want any
	}{
		{"lora, earlier keys", `{"R":4,"Alpha":8,"Dropout":0.1,"TargetModules":[".*q_proj"],"TrainableModules":[".*norm.*"],"TrainableBias":"lora","EnableLoRAList":[true,false,true],"HeadDim":4,"DType":"bfloat16","TensorParallelDegree":-1,"UseRSLoRA":true,"InitLoRAWeights":"gaussian","BaseModelName":"llama.onnx","MergeWeights":true,"DoQAT":true,"LoRAPlusScale":4,"UseQuickLoRA":true,"FanInFanOut":true,"TaskType":"CAUSAL_LM","InferenceMode":true,"Revision":"main","RankPattern":{"q_proj":2},"AlphaPattern":{"q_proj":3},"LayersToTransform":[0],"LayersPattern":["layers"],"UseDoRA":false}`,
			&LoRAConfig{}, &lora},
		{"lora, today's keys", mustJSON(t, lora), &LoRAConfig{}, &lora},
		{"lora, both: today's win", `{"r":4,"R":9,"Alpha":1,"lora_alpha":8}`, &LoRAConfig{}, &LoRAConfig{R: 4, Alpha: 8}},
		{"prefix, earlier keys", `{"NumPrefixTokens":3,"NumAttentionHeads":4,"MultiQueryGroupNum":2,"NumHiddenLayers":2,"HiddenSize":16,"PrefixProjection":true,"PrefixProjectionHiddenSize":8,"PrefixDropout":0.1,"DType":"float16","TensorParallelDegree":1,"TaskType":"CAUSAL_LM","BaseModelName":"llama.onnx","InferenceMode":true,"Revision":"v1"}`,
			&PrefixConfig{}, &prefix},
		{"prefix, today's keys", mustJSON(t, prefix), &PrefixConfig{}, &prefix},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := json.Unmarshal([]byte(tc.json), tc.into); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tc.into, tc.want) {
				t.Errorf("got %+v\nwant %+v", tc.into, tc.want)
			}
		})
	}
	got := mustJSON(t, lora)
	want := `{"r":4,"lora_alpha":8,"lora_dropout":0.1,"target_modules":[".*q_proj"],"trainable_modules":[".*norm.*"],"trainable_bias":"lora","enable_lora_list":[true,false,true],"head_dim":4,"dtype":"bfloat16","tensor_parallel_degree":-1,"use_rslora":true,"init_lora_weights":"gaussian","base_model_name_or_path":"llama.onnx","merge_weights":true,"do_qat":true,"lora_plus_scale":4,"use_quick_lora":true,"fan_in_fan_out":true,"task_type":"CAUSAL_LM","inference_mode":true,"revision":"main","rank_pattern":{"q_proj":2},"alpha_pattern":{"q_proj":3},"layers_to_transform":[0],"layers_pattern":["layers"],"use_dora":false}`
	if got != want {
		t.Errorf("LoRAConfig written as\n%s\nwant\n%s", got, want)
	}
	got = mustJSON(t, prefix)
	want = `{"num_prefix_tokens":3,"num_attention_heads":4,"multi_query_group_num":2,"num_hidden_layers":2,"hidden_size":16,"prefix_projection":true,"prefix_projection_hidden_size":8,"prefix_dropout":0.1,"dtype":"float16","tensor_parallel_degree":1,"task_type":"CAUSAL_LM","base_model_name_or_path":"llama.onnx","inference_mode":true,"revision":"v1"}`
	if got != want {
		t.Errorf("PrefixConfig written as\n%s\nwant\n%s", got, want)
	}
}

// TestConfigKeysV0: the earlier keys map onto keys that the configs have,
// and every field has a json key of its own.
func TestConfigKeysV0(t *testing.T) {
	for _, tc := range []struct {
		typ reflect.Type
		v0  map[string]string
	}{
		{reflect.TypeOf(LoRAConfig{}), loraKeysV0},
		{reflect.TypeOf(PrefixConfig{}), prefixKeysV0},
	} {
		tags := map[string]bool{}
		for i := range tc.typ.NumField() {
			f := tc.typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == "" || tag == "-" {
				t.Errorf("%s.%s has no json key", tc.typ.Name(), f.Name)
			}
			if tags[tag] {
				t.Errorf("%s: json key %q is used twice", tc.typ.Name(), tag)
			}
			tags[tag] = true
		}
		for old, key := range tc.v0 {
			if !tags[key] {
				t.Errorf("%s: earlier key %q maps to %q, which is no json key of it", tc.typ.Name(), old, key)
			}
		}
	}
}

// TestConfigJSONErrors: a config that is not an object, or has a value of
// the wrong type, is an error that names the config.
func TestConfigJSONErrors(t *testing.T) {
	for _, tc := range []struct {
		json, want string
	}{
		{`[1]`, "adapter: lora config:"},
		{`{"Alpha":"eight"}`, "lora_alpha"},
		{`{"lora_alpha":"eight"}`, "lora_alpha"},
	} {
		var c LoRAConfig
		err := json.Unmarshal([]byte(tc.json), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.json, err, tc.want)
		}
	}
	var p PrefixConfig
	if err := json.Unmarshal([]byte(`{"NumPrefixTokens":"x"}`), &p); err == nil || !strings.Contains(err.Error(), "prefix config") {
		t.Errorf("prefix: got error %v, want one naming the prefix config", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
