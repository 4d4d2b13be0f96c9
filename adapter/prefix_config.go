package adapter

import (
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
)

// PrefixConfig configures prefix tuning. It carries every field of
// PaddleNLP's PrefixConfig. The prefix table has one row per prefix token
// and NumHiddenLayers·2·KVHeads()·HeadDim() columns: keys and values for
// every layer, sized by the key/value heads, not the query heads. In JSON
// its keys are snake_case (num_prefix_tokens, …); the Go field names that
// earlier versions wrote are read too (config_json.go).
type PrefixConfig struct {
	NumPrefixTokens    int `json:"num_prefix_tokens"`     // P, the number of virtual tokens
	NumAttentionHeads  int `json:"num_attention_heads"`   // query heads
	MultiQueryGroupNum int `json:"multi_query_group_num"` // key/value heads (GQA/MQA); 0 means NumAttentionHeads
	NumHiddenLayers    int `json:"num_hidden_layers"`
	HiddenSize         int `json:"hidden_size"`

	// PrefixProjection puts an encoder Embedding → Linear → Tanh → Linear
	// in front of the table, with PrefixProjectionHiddenSize in the middle.
	PrefixProjection           bool    `json:"prefix_projection"`
	PrefixProjectionHiddenSize int     `json:"prefix_projection_hidden_size"`
	PrefixDropout              float64 `json:"prefix_dropout"`

	DType                dtype.Type `json:"dtype"`                  // dtype the adapter trains in: Float32, Float16 or BFloat16; Undefined means Float32
	TensorParallelDegree int        `json:"tensor_parallel_degree"` // -1, 0 or 1: none

	// HuggingFace PEFT fields.
	TaskType      string `json:"task_type"`               // e.g. "CAUSAL_LM"
	BaseModelName string `json:"base_model_name_or_path"` // base_model_name_or_path
	InferenceMode bool   `json:"inference_mode"`
	Revision      string `json:"revision"`
}

// PEFTType returns "PREFIX_TUNING".
func (c *PrefixConfig) PEFTType() string { return "PREFIX_TUNING" }

// KVHeads returns the number of key/value heads.
func (c *PrefixConfig) KVHeads() int {
	if c.MultiQueryGroupNum > 0 {
		return c.MultiQueryGroupNum
	}
	return c.NumAttentionHeads
}

// HeadDim returns HiddenSize / NumAttentionHeads.
func (c *PrefixConfig) HeadDim() int {
	if c.NumAttentionHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// TableWidth returns the width of the prefix table:
// layers · 2 · kv_heads · head_dim.
func (c *PrefixConfig) TableWidth() int {
	return c.NumHiddenLayers * 2 * c.KVHeads() * c.HeadDim()
}

// EmbeddingWidth returns the width of the prompt_embeddings tensor: the
// table width, or HiddenSize with a projection (the encoder's input).
func (c *PrefixConfig) EmbeddingWidth() int {
	if c.PrefixProjection {
		return c.HiddenSize
	}
	return c.TableWidth()
}

// Validate reports the first field that is out of range, as an error that
// names the config field.
func (c *PrefixConfig) Validate() error { return validated(c) }

func (c *PrefixConfig) kind() string { return "prefix" }

func (c *PrefixConfig) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"num_prefix_tokens", c.NumPrefixTokens},
		{"num_attention_heads", c.NumAttentionHeads},
		{"num_hidden_layers", c.NumHiddenLayers},
		{"hidden_size", c.HiddenSize},
	} {
		if f.v <= 0 {
			return fmt.Errorf("%s must be positive, got %d", f.name, f.v)
		}
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	if c.MultiQueryGroupNum < 0 {
		return fmt.Errorf("multi_query_group_num must not be negative, got %d", c.MultiQueryGroupNum)
	}
	if c.NumAttentionHeads%c.KVHeads() != 0 {
		return fmt.Errorf("num_attention_heads %d is not a multiple of multi_query_group_num %d", c.NumAttentionHeads, c.KVHeads())
	}
	if c.PrefixProjection && c.PrefixProjectionHiddenSize <= 0 {
		return fmt.Errorf("prefix_projection needs a positive prefix_projection_hidden_size, got %d", c.PrefixProjectionHiddenSize)
	}
	if c.PrefixProjectionHiddenSize < 0 {
		return fmt.Errorf("prefix_projection_hidden_size must not be negative, got %d", c.PrefixProjectionHiddenSize)
	}
	if err := checkProbability("prefix_dropout", c.PrefixDropout); err != nil {
		return err
	}
	if err := checkTrainingDType(c.DType); err != nil {
		return err
	}
	return checkTensorParallel(c.TensorParallelDegree)
}
