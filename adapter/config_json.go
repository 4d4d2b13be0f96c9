package adapter

import (
	"bytes"
	"encoding/json"
)

// LoRAConfig and PrefixConfig encode to JSON with snake_case keys, as
// PaddleNLP and HuggingFace PEFT spell those fields (lora_alpha,
// num_prefix_tokens, …): the form in which package rewrite records an
// adapted model's config in its metadata. Versions of peftonnx before
// these keys existed wrote the Go field names ({"R":4,"Alpha":8,…});
// UnmarshalJSON reads both, and writing uses the snake_case keys only.
//
// The tables below are that earlier format, frozen: a key in it is read
// as the key it maps to. They must not follow later renames of the Go
// fields, since they describe files that users already have.

// loraKeysV0 maps the keys of a LoRAConfig written before the json tags to
// today's keys.
var loraKeysV0 = map[string]string{
	"R":                    "r",
	"Alpha":                "lora_alpha",
	"Dropout":              "lora_dropout",
	"TargetModules":        "target_modules",
	"TrainableModules":     "trainable_modules",
	"TrainableBias":        "trainable_bias",
	"EnableLoRAList":       "enable_lora_list",
	"HeadDim":              "head_dim",
	"DType":                "dtype",
	"TensorParallelDegree": "tensor_parallel_degree",
	"UseRSLoRA":            "use_rslora",
	"InitLoRAWeights":      "init_lora_weights",
	"BaseModelName":        "base_model_name_or_path",
	"MergeWeights":         "merge_weights",
	"DoQAT":                "do_qat",
	"LoRAPlusScale":        "lora_plus_scale",
	"UseQuickLoRA":         "use_quick_lora",
	"FanInFanOut":          "fan_in_fan_out",
	"TaskType":             "task_type",
	"InferenceMode":        "inference_mode",
	"Revision":             "revision",
	"RankPattern":          "rank_pattern",
	"AlphaPattern":         "alpha_pattern",
	"LayersToTransform":    "layers_to_transform",
	"LayersPattern":        "layers_pattern",
	"UseDoRA":              "use_dora",
}

// prefixKeysV0 maps the keys of a PrefixConfig written before the json
// tags to today's keys.
var prefixKeysV0 = map[string]string{
	"NumPrefixTokens":            "num_prefix_tokens",
	"NumAttentionHeads":          "num_attention_heads",
	"MultiQueryGroupNum":         "multi_query_group_num",
	"NumHiddenLayers":            "num_hidden_layers",
	"HiddenSize":                 "hidden_size",
	"PrefixProjection":           "prefix_projection",
	"PrefixProjectionHiddenSize": "prefix_projection_hidden_size",
	"PrefixDropout":              "prefix_dropout",
	"DType":                      "dtype",
	"TensorParallelDegree":       "tensor_parallel_degree",
	"TaskType":                   "task_type",
	"BaseModelName":              "base_model_name_or_path",
	"InferenceMode":              "inference_mode",
	"Revision":                   "revision",
}

// UnmarshalJSON reads a LoRAConfig with today's keys or with the Go field
// names that earlier versions wrote. Where both spell one field, today's
// key wins.
func (c *LoRAConfig) UnmarshalJSON(b []byte) error {
	type plain LoRAConfig // the fields and tags, without this method
	return decodeConfig(b, loraKeysV0, c.kind(), (*plain)(c))
}

// UnmarshalJSON reads a PrefixConfig with today's keys or with the Go
// field names that earlier versions wrote. Where both spell one field,
// today's key wins.
func (c *PrefixConfig) UnmarshalJSON(b []byte) error {
	type plain PrefixConfig
	return decodeConfig(b, prefixKeysV0, c.kind(), (*plain)(c))
}

// decodeConfig decodes b, a config of kind (for messages) whose keys may
// be the Go field names that old renames, into v, which must not be a
// type with this package's UnmarshalJSON.
func decodeConfig(b []byte, old map[string]string, kind string, v any) error {
	b, err := renameKeys(b, old)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		return errorf("%s config: %w", kind, err)
	}
	return nil
}

// renameKeys returns the JSON object b with each key of old that it holds
// renamed to old's value, unless the new key is there too, in which case
// the old one is dropped. null is returned as it is.
func renameKeys(b []byte, old map[string]string) ([]byte, error) {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return b, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	renamed := false
	for from, to := range old {
		v, ok := fields[from]
		if !ok {
			continue
		}
		if _, both := fields[to]; !both {
			fields[to] = v
		}
		delete(fields, from)
		renamed = true
	}
	if !renamed {
		return b, nil
	}
	return json.Marshal(fields)
}
