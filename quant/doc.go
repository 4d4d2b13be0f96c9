// Package quant owns ONNX Runtime's block-quantized weight format, the
// com.microsoft MatMulNBits operator: Y = A·dequantize(B) (+ bias), for a
// weight of K input and N output features, as ONNX Runtime's
// docs/ContribOperators.md specifies it and its 1.24 CPU kernel runs it.
//
// # The layout
//
// The K×N weight is cut along K into blocks of block_size rows (a power of
// two, at least 16); k_blocks = ceil(K / block_size), and the last block is
// padded when K is not a multiple of block_size. Each block of each output
// column n has a scale s and a zero point z, and stores each element as a
// code q of bits bits that stands for (q − z)·s.
//
//   - Attributes: K, N, bits (2, 4 or 8; 4 where absent), block_size, and
//     accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8: ONNX Runtime
//     may then quantize A to int8 per block).
//   - B: uint8 [N, k_blocks, blob_size], blob_size = block_size·bits/8.
//     Codes are packed low bits first: for 4 bits, row 2i of a block is the
//     low nibble of byte i and row 2i+1 its high nibble.
//   - scales: [N, k_blocks], the type of A (float32, float16, bfloat16).
//     ONNX Runtime also reads the flat [N·k_blocks] that its own quantizer
//     writes; this package writes the spec's 2-D shape and reads both.
//   - zero_points (optional): packed uint8 [N, ceil(k_blocks·bits/8)], each
//     column's zero points starting on a byte, low bits first (also read
//     flat), or unpacked [N, k_blocks] of the scales' type. Without them
//     every block has the zero point 2^(bits−1), 8 for 4 bits: that is
//     symmetric quantization.
//   - g_idx (optional, deprecated): int32 [K] or [k_blocks·block_size],
//     the block whose scale and zero point row k uses.
//   - bias (optional): [N], the type of A.
//
// Every one of these facts is checked against ONNX Runtime's own kernel in
// this package's tests: its output equals a Go dequantize-then-matmul of
// the same blocks to 1e-5 relative.
//
// # What is here
//
// Layout holds the shape; Weight holds the packed bytes, scales and zero
// points. Quantize rounds a float32 weight, [K, N] as a MatMul's B input
// holds it, to nearest, block by block, symmetric or with per-block zero
// points, by ONNX Runtime's own rules (see Quantize). Dequantize is the
// exact inverse of the packed form, DequantizeBlocks does it for a range
// of blocks, and Requantize rounds a new float weight into an existing
// weight's layout. Tensors, Node and ReadNode move a Weight in and out of
// an ONNX graph, under the names that ONNX Runtime's quantizer (and so the
// onnxruntime-genai model builder) gives them (BuilderNames).
//
// # Limits
//
//   - 2, 4 and 8 bits only: the widths ONNX Runtime 1.24 runs. Others are
//     refused, as ONNX Runtime refuses them.
//   - Quantize is round-to-nearest only (no GPTQ, AWQ, HQQ or k-quant), and
//     never writes g_idx or float zero points; Dequantize and ReadNode read
//     them.
//   - g_idx together with packed zero points is refused: ONNX Runtime
//     1.24's CPU kernel then ignores the zero points and dequantizes with
//     2^(bits−1), against its spec, so such a weight has no one meaning.
//   - Weights with g_idx cannot be requantized.
//   - Prepacked B (the weight_prepacked attribute) is not read.
package quant
