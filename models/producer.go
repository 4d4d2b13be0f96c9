package models

import "strconv"

// Producer names the tool whose export a builder imitates: the ops it
// writes and the names it gives nodes, values and weights. Whatever the
// producer, a config with the same sizes and seed has the same weight
// values, drawn under the Optimum names, so that every layout of a
// model computes the same function.
type Producer int

const (
	// Optimum is a PyTorch export as Optimum makes it: standard ops only,
	// nodes named after the modules (/model/layers.0/self_attn/q_proj/MatMul).
	// It is the default.
	Optimum Producer = iota
	// ModelBuilder is the onnxruntime-genai model builder's decoder:
	// com.microsoft GroupQueryAttention with the rotary embedding inside
	// (or RotaryEmbedding nodes), SimplifiedLayerNormalization and
	// SkipSimplifiedLayerNormalization, seqlens_k and
	// total_sequence_length computed from attention_mask, and the
	// builder's names (/model/layers.0/attn/q_proj/MatMul reading
	// model.layers.0.attn.q_proj.MatMul.weight). LLaMA only.
	ModelBuilder
	// TransformerOptimizer is what ONNX Runtime's transformer optimizer
	// (onnxruntime.transformers.optimizer) makes of an export: Attention
	// with the packed QKV weight, EmbedLayerNormalization,
	// SkipLayerNormalization with the projection's bias folded in, and
	// FastGelu (GPT-2) or BiasGelu (BERT), named as the optimizer names
	// its fused nodes (GptAttention_0, Attention_0, SkipLayerNorm_0,
	// EmbedLayerNormalization_0). GPT-2 and BERT only.
	TransformerOptimizer
)

// String returns the producer's name.
func (p Producer) String() string {
	switch p {
	case Optimum:
		return "optimum"
	case ModelBuilder:
		return "model-builder"
	case TransformerOptimizer:
		return "transformer-optimizer"
	}
	return "producer(" + strconv.Itoa(int(p)) + ")"
}
