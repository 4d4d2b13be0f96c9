// Package models builds small reference transformers in Go, so that tests,
// the demo and the benchmarks need nothing downloaded.
//
// Three families are built, each from a config with named presets (Tiny for
// tests, Mini for the demo, Base at GPT-2 small's sizes for benchmarks):
//
//   - Llama: a LLaMA-style decoder with RMSNorm, rotary position embeddings
//     (rotate-half, from position_ids), grouped-query attention, a SiLU-gated
//     MLP, an attention_mask and a past_key_values / present KV cache.
//     Float32 or float16.
//   - GPT2: a GPT-2-style decoder with learned positions, LayerNorm, the
//     fused c_attn projection split into q, k and v, tanh GELU and an
//     optional KV cache. Linear layers are MatMul + Add, or Gemm(transB=1).
//   - BERT: a BERT-style encoder with token-type embeddings, erf GELU, a
//     Tanh pooler over the first token and a classifier.
//
// # Producers
//
// Each family is laid out by default as Optimum exports it, in standard
// ops. The Producer field lays it out as the tools that people ship ONNX
// models with do instead, with their com.microsoft fused ops and their
// names, weights unchanged:
//
//   - ModelBuilder (Llama): the onnxruntime-genai model builder's
//     decoder, with GroupQueryAttention (rotary inside, or RotaryEmbedding
//     nodes), SimplifiedLayerNormalization and
//     SkipSimplifiedLayerNormalization, packed or separate q, k and v,
//     float32 or float16 (see ModelBuilderOptions). int4 models are these
//     graphs after quantize.Model.
//   - TransformerOptimizer (GPT2, BERT): ONNX Runtime's transformer
//     optimizer, with Attention (packed QKV), EmbedLayerNormalization,
//     SkipLayerNormalization, FastGelu and BiasGelu (see
//     OptimizerOptions).
//
// Each layout has a standard-op twin (its Unfused option): the same graph
// and weights under the same names with the fused ops written out, which
// the tests hold the fused graph to on ONNX Runtime, and against which
// gradients through the fused graph are checked.
//
// # Names
//
// Nodes and weights carry the names that the PyTorch exporter (Optimum)
// gives HuggingFace models: the node /model/layers.0/self_attn/q_proj/MatMul
// reads the weight model.layers.0.self_attn.q_proj.weight. Weights feeding
// a MatMul are stored [in, out], ready for it; a Gemm's weight is stored
// [out, in] and the node has transB=1. Constants are Constant nodes, so
// the initializers are exactly the model's parameters.
//
// # Ops
//
// Every graph imports the default domain at Opset (17) and uses only
// standard ops, and few of them, so that reverse-mode differentiation over
// the graphs needs a small rule set: MatMul, Add, Sub, Mul, Div, Pow, Sqrt,
// Neg, ReduceMean, Softmax, Sigmoid, Tanh, Erf, Cos, Sin,
// LayerNormalization, Gemm, Gather, Reshape, Transpose, Concat, Split,
// Slice, Unsqueeze, Expand, Cast, Where, And, LessOrEqual, Shape, Range,
// ConstantOfShape and Constant. The integer paths (shapes, the mask,
// positions) carry no gradient.
//
// # Small fixtures
//
// Beside the three families, a few small graphs hold the other layer kinds
// and layouts that LoRA meets in exports: ConvLM (an embedding, a Conv1d
// and a Conv2d: a causal convolutional language model), QDQLinear (a
// linear layer in ONNX Runtime's QDQ int8 layout; QDQMLP two of them),
// IR3MLP (an IR-3 export
// whose initializers are also graph inputs) and IfLinear (linear layers
// inside the branches of an If).
//
// # Weights
//
// Weights are a function of the config's Seed and each tensor's name alone:
// every tensor draws its own splitmix64 stream, turned into normal values by
// Box-Muller, with HuggingFace's standard deviation of 0.02 unless
// InitStd says otherwise. Norm scales are drawn around 1 and biases around
// 0 (not set to exactly 1 and 0), so that a test notices one that is not
// applied. Large tensors are filled in parallel with the same values.
// WeightsOf reads the weights back from any model.
//
// # Tensor parallelism
//
// LlamaTensorParallel cuts one rank's share out of a LLaMA, sharded as
// Megatron-LM and PaddleNLP shard it: the embedding and lm_head by
// vocabulary, q_proj, k_proj, v_proj, gate_proj and up_proj by output
// (whole heads), o_proj and down_proj by input. Its pieces (the
// embedding, each layer's attention and MLP blocks, the head) run one
// after the other, with the sum of every rank's partial output between
// them, and give the whole model's logits, each rank its run of the
// vocabulary (padded, as Megatron-LM pads it, where the ranks do not split
// it evenly). Without the full model it draws only the rank's part of each
// weight.
//
// # References
//
// LlamaReference, GPT2Reference and BERTReference compute the same models
// in float64 with plain loops, without ONNX. The tests hold the graphs, run
// on ONNX Runtime, to them.
//
// # Limits
//
// The models are untrained: their outputs mean nothing. Only LLaMA has a
// float16 variant. There is no dropout and no tied-weight sharing in the
// graph (GPT-2's head holds a transposed copy of the token embedding). The
// Optimum layouts hold no fused contrib ops.
//
// ONNX Runtime's CPU GroupQueryAttention rotates only heads whose size is
// a multiple of 16, and takes a past with more than one new token only for
// batch 1; the model-builder layout is built whatever the sizes, but runs
// only within those limits. GroupQueryAttention assumes padding on the
// right (its positions and causal window start at each row's first
// token), as does BERT's mask_index.
package models
