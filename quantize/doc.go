// Package quantize turns a model's float linear layers into ONNX Runtime's
// int4 (or int2, int8) MatMulNBits layers, the form in which the
// onnxruntime-genai model builder ships LLMs.
//
// Model finds the linear layers with rewrite.FindLinears, keeps those
// that the targets choose (full matches on module or node name, as
// rewrite.MatchTargets takes them), rounds each weight to nearest in
// blocks along its input features with package quant, and puts a
// com.microsoft MatMulNBits node in each layer's place, named as ONNX
// Runtime's quantizer names it ("/model/layers.0/attn/q_proj/MatMul_Q4",
// "model.layers.0.attn.q_proj.MatMul.weight_Q4", "…_scales",
// "…_zero_points"). Its Report gives each layer's round-to-nearest (RTN)
// error: the largest and the relative Frobenius error of the dequantized
// weight, and the relative error of the layer's output on a random input.
//
// # Limits
//
//   - Round-to-nearest only: no calibration (GPTQ, AWQ) and no search for
//     better scales (HQQ, k-quant).
//   - Layers that compute in float32 or float16; bfloat16 and float64
//     layers are skipped, since ONNX Runtime's CPU kernel does not run
//     them.
//   - A Gemm with transA, or whose C is not an [N] initializer, is skipped
//     and listed with the reason; MatMul + Add keeps its Add.
//   - Models that carry LoRA branches or a prefix are refused: quantize
//     the base model first.
//   - Embeddings (Gather) stay float unless Options.Embeddings asks for
//     GatherBlockQuantized (4 or 8 bits, rows of whole blocks); without it
//     a weight that an embedding shares with lm_head stays beside
//     lm_head's packed copy.
package quantize
