package adapter

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

func TestPrefixConfigSizes(t *testing.T) {
	tests := []struct {
		cfg                   PrefixConfig
		kv, headDim, width, e int
	}{
		{PrefixConfig{NumPrefixTokens: 4, NumAttentionHeads: 12, NumHiddenLayers: 12, HiddenSize: 768}, 12, 64, 12 * 2 * 12 * 64, 12 * 2 * 12 * 64},
		{PrefixConfig{NumPrefixTokens: 4, NumAttentionHeads: 32, MultiQueryGroupNum: 8, NumHiddenLayers: 2, HiddenSize: 4096}, 8, 128, 2 * 2 * 8 * 128, 2 * 2 * 8 * 128},
		{PrefixConfig{NumPrefixTokens: 4, NumAttentionHeads: 4, MultiQueryGroupNum: 1, NumHiddenLayers: 3, HiddenSize: 16, PrefixProjection: true}, 1, 4, 3 * 2 * 1 * 4, 16},
	}
	for i, test := range tests {
		c := test.cfg
		if c.KVHeads() != test.kv || c.HeadDim() != test.headDim || c.TableWidth() != test.width || c.EmbeddingWidth() != test.e {
			t.Errorf("test %d: got kv %d head_dim %d width %d embedding %d want %d %d %d %d", i,
				c.KVHeads(), c.HeadDim(), c.TableWidth(), c.EmbeddingWidth(), test.kv, test.headDim, test.width, test.e)
		}
	}
}

func TestPrefixConfigValidate(t *testing.T) {
	tests := []struct {
		reason string
		edit   func(c *PrefixConfig)
		want   string
	}{
		{"valid", func(c *PrefixConfig) {}, ""},
		{"no tokens", func(c *PrefixConfig) { c.NumPrefixTokens = 0 }, "num_prefix_tokens must be positive"},
		{"no heads", func(c *PrefixConfig) { c.NumAttentionHeads = 0 }, "num_attention_heads must be positive"},
		{"no layers", func(c *PrefixConfig) { c.NumHiddenLayers = -1 }, "num_hidden_layers must be positive"},
		{"hidden not divisible", func(c *PrefixConfig) { c.HiddenSize = 30 }, "hidden_size 30 is not a multiple of num_attention_heads 4"},
		{"kv not dividing heads", func(c *PrefixConfig) { c.MultiQueryGroupNum = 3 }, "not a multiple of multi_query_group_num 3"},
		{"negative kv", func(c *PrefixConfig) { c.MultiQueryGroupNum = -1 }, "multi_query_group_num must not be negative"},
		{"projection without size", func(c *PrefixConfig) { c.PrefixProjection = true }, "prefix_projection needs a positive prefix_projection_hidden_size"},
		{"projection", func(c *PrefixConfig) { c.PrefixProjection = true; c.PrefixProjectionHiddenSize = 64 }, ""},
		{"dropout", func(c *PrefixConfig) { c.PrefixDropout = 1.5 }, "prefix_dropout must be in [0, 1)"},
		{"dtype", func(c *PrefixConfig) { c.DType = dtype.Int8 }, "dtype must be float32, float16 or bfloat16"},
		{"tensor parallel", func(c *PrefixConfig) { c.TensorParallelDegree = -3 }, "tensor_parallel_degree"},
	}
	for i, test := range tests {
		c := PrefixConfig{NumPrefixTokens: 8, NumAttentionHeads: 4, MultiQueryGroupNum: 2, NumHiddenLayers: 2, HiddenSize: 32, TensorParallelDegree: -1}
		test.edit(&c)
		if err := errContains(c.Validate(), test.want); err != nil {
			t.Errorf("test %d (%s): %v", i, test.reason, err)
		}
	}
}
