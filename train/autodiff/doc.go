// Package autodiff derives training graphs from ONNX models: reverse-mode
// automatic differentiation that writes the gradient as ONNX nodes, so that
// one ONNX Runtime session computes the loss and its gradients.
//
// Build(m, loss, params) returns a new model whose outputs are the loss and
// grad.<param> (GradName) for each parameter. The parameters become graph
// inputs, fed by the caller at each step; frozen weights stay initializers,
// where ONNX Runtime can prepack them.
//
// # How gradients come about
//
//  1. The nodes that the loss needs are kept, in topological order (real
//     exports are not sorted); the rest is dropped, with the initializers
//     only it read.
//  2. Element types and symbolic shapes are inferred for every value, best
//     effort: named dynamic dims (batch_size) stay equal to themselves, and
//     small integer tensors such as shapes are followed through Shape,
//     Gather, Concat and friends, so that Reshape targets are known.
//  3. A value requires a gradient when a parameter reaches it through
//     differentiable inputs of floating-point values. Integer and boolean
//     values, Shape outputs, indices and masks carry none, and nor does
//     an int4 embedding (com.microsoft GatherBlockQuantized: a packed
//     table and integer ids), which has inference and no rule.
//  4. Fused com.microsoft ops without a rule of their own on such a path are
//     rewritten exactly into standard ops, as ONNX Runtime's CPU kernels
//     compute them: GroupQueryAttention, Attention, MultiHeadAttention,
//     EmbedLayerNormalization, BiasAdd and FusedMatMul. The ops that have
//     rules stay fused in the forward pass (SkipLayerNormalization,
//     SkipSimplifiedLayerNormalization, RotaryEmbedding, Gelu, FastGelu,
//     BiasGelu, QuickGelu, MatMulNBits).
//  5. The nodes on a path from a parameter to the loss are walked in reverse
//     order. Each op's rule emits its vector-Jacobian product; gradients of a
//     value read by several nodes are added with Sum. Inputs that need no
//     gradient (frozen weights) get none computed. The loss is seeded with 1.
//  6. A gradient that flowed through broadcasting is summed back to the
//     input's shape: with static axes where the inferred shapes settle them,
//     otherwise with axes computed in the graph (Shape, Equal, NonZero,
//     ReduceSum with axes as an input from opset 13; before opset 13, one
//     Where and Slice per undecided axis).
//
// Nodes are emitted in the form that the model's default-domain opset wants
// (axes as attributes or inputs, Softmax's 2-D coercion before opset 13),
// and are named grad/<forward node>/<op>.
//
// # Memory
//
// What a training step holds at its peak is mostly what the forward pass
// keeps for the backward pass, so the emitted graph keeps little:
//
//   - dY·Wᵀ for a 2-D W is a Gemm with transB, not a MatMul of a
//     Transpose: ONNX Runtime would fold the Transpose of a frozen weight
//     into a second, transposed copy of it.
//   - Shapes that a rule needs (Reshape, Expand, counts) are built from
//     constants and the named dims of graph inputs where inference knows
//     them, not from Shape(x) of a forward value, which would keep x alive
//     until the backward pass reads its shape.
//   - SoftmaxCrossEntropyLoss's gradient, when its log_prob output has none
//     of its own, is softmax·c with c taken off at the labels: no one-hot
//     tensor, no second class-sized difference.
//   - Recomputation (WithRecompute, on by default): a value that the
//     backward pass reads and that a cheap element-wise node made from
//     values the backward pass keeps anyway is made again there (under the
//     recompute/ scope), so that the forward value dies with the forward
//     pass. So is a value that data-movement nodes with an Expand among
//     them made from a smaller one (grouped-query attention's repeated
//     keys and values): the backward pass keeps the source instead
//     (expansion.go). The gradients are the same, bit for bit. WithRecomputeProducts
//     adds the products with frozen weights; WithRecomputeLayers
//     checkpoints whole decoder layers (every value of a "layers.N/" node
//     but those that leave the layer is made again from the layer's input).
//   - Stopped gradients: the values that a model's metadata lists under
//     StopGradientKey (MarkStopGradient) are constants to the gradient,
//     as torch's detach; train's chunked loss marks the values through
//     which it hands its own gradient to the hidden state.
//
// # Rules
//
// Everything autodiff knows about an op is one registry entry, keyed by
// domain and op type (the default domain is "", however a node spells
// it): its gradient rule or decomposition, the input slots gradients flow
// through, its shape and type inference, and whether it is cheap enough to
// recompute. The entries are registered by one file per family, each
// beside its finite-difference test: elementwise.go, activation.go,
// matmul.go, reduce.go, shapeops.go, norm.go, attention.go (RotaryEmbedding,
// MultiHeadAttention), gqa.go (GroupQueryAttention), msattention.go
// (Attention), embedlayernorm.go, bias.go (BiasAdd), matmulnbits.go,
// conv.go (Conv: input by ConvTranspose, weight of group 1, bias), qdq.go
// (QuantizeLinear → DequantizeLinear pairs on a gradient path become a
// float fake quantization with the straight-through estimator, Round's
// rule),
// loss.go, and sources.go for ops without a gradient that make tensors
// (constants, ranges, one-hot codes). Adding an op touches its family file
// and its test. Supported lists the ops that have a rule or a
// decomposition.
//
// Each decomposition is checked against finite differences of ONNX
// Runtime's own kernel and, value by value, against the kernel's forward;
// where ONNX Runtime's CPU does not run an op (packed MultiHeadAttention,
// BiasAdd), against the same graph written in standard ops.
//
// An op that inference does not know (or a rule-less op the registry does
// not hold) gets the types the graph declares for its outputs, in
// value_info or among the graph outputs. Where the graph declares nothing
// either, a probe run (WithShapeProbe: one forward run, on the caller's
// first batch) tells the outputs' element types and ranks; without one
// they stay unknown, and the rules then compute shapes in the graph where
// they can.
//
// # Limits
//
//   - The default-domain opset must be 11 or newer. Before opset 13 the rank
//     of a broadcast operand must be known to inference.
//   - Gradients are computed in the forward's element type: a float16 model
//     gets float16 gradients. Normalizations recompute their statistics in
//     that type.
//   - GroupQueryAttention: the position_ids input, the output_qk output,
//     quantized or window-sized KV caches and fused Q/K norms are refused.
//     Its present_key and present_value are past and new keys joined, as
//     the kernel writes them when every row's past is the whole past
//     buffer. Where the kernel itself refuses to run (batch > 1 with a past
//     and more than one new token, as prefix tuning trains), each row's
//     past is taken to be the whole past buffer and the new tokens padded
//     on the right.
//   - Attention: the 4-D Megatron mask_index and the [3·batch+2] one,
//     do_rotary and a past sharing the present's buffer are refused.
//     MultiHeadAttention: past_sequence_length, cache_indirection and the
//     qk output are refused.
//   - MatMulNBits: g_idx (act-order) weights are refused. A training
//     graph with MatMulNBits on a gradient path gets the input
//     RunOneInput, which is never fed.
//   - Control flow (If, Loop, Scan) and ops without a rule on a gradient path
//     fail before any gradient is emitted, with an error that wraps
//     ErrNoRule and names the op, the node and the parameters whose
//     gradients it blocks. A decomposition that refuses a node's attributes
//     names them too.
//   - Dropout's gradient uses the mask its forward drew, so forward and
//     backward must run in the same session run, as Build's graph does.
package autodiff
