// Package rewrite changes ONNX graphs for parameter-efficient fine-tuning:
// it finds linear layers, gives them LoRA branches, merges the branches back
// into the weights, and moves adapters in and out of graphs.
//
// # Layers and names
//
// FindLinears lists every linear layer: a MatMul whose second input is a
// 2-D floating-point initializer, or a Gemm whose B is one, the weight
// reached directly or through Cast, Transpose and Identity nodes, or an
// integer weight behind DequantizeLinear (QDQ int8), or a weight that is a
// graph input where the model lists its initializers as inputs (IR < 4).
// FindLayers adds the other layers HF PEFT adapts: embeddings (a Gather on
// axis 0 of a 2-D float table, embedding_layer.go) and convolutions (Conv1d,
// Conv2d, Conv3d with group 1, conv.go); Linear.Kind tells them apart, and
// InjectLoRA, Apply and MergeAdapter take all three. Layers inside
// If/Loop/Scan subgraphs are not adapted; FindNestedLayers lists them, and
// errors about targets that match nothing name them. Each gets
// a module name, the name PyTorch gives the layer, so that an adapter
// trained there lands on the right node here: from an exporter's node path
// (/model/layers.0/self_attn/q_proj/MatMul → model.layers.0.self_attn.q_proj),
// else from the weight's name (h.0.attn.c_attn.weight_resize →
// h.0.attn.c_attn), else from the bias's (….q_lin.bias), else from a TF
// kernel path or a name such as l0.q.w or lm_head_weight, else from the
// layer's Role in the graph's structure (query, key, value and output of
// an attention block, gate, up and down of its MLP: layers.0.self_attn.q_proj),
// else from the node name. TF and Keras paths are cleaned
// (StatefulPartitionedCall/…, …/Tensordot/MatMul, layer_._3 → layer.3).
// MatchTargets selects layers with regexes that must match a module or
// node name whole, as re.fullmatch does; one that matches nothing lists
// the modules that exist. adapter.ModuleTargets turns HF PEFT's
// target_modules names (matched by suffix) into such regexes, WithModules
// does it for InjectLoRA, and adapter.AllLinear selects every linear layer
// but the output head (Linear.Head). SuggestTargets names the usual groups
// of a model (attention q,v; q,k,v,o; MLP; all linear) with the targets
// that select them. TokenEmbedding finds the table that the token ids
// index (its rows are the vocabulary, its columns the hidden size).
//
// # Adapters as inputs of other exports
//
// InputParams, ApplyInputs and MergeInputs handle ONNX Runtime's own
// .onnx_adapter files, whose parameters are named after inputs of a model
// that another tool exported with its LoRA factors as inputs
// (lora_param_a): they are checked against those inputs, made their
// defaults, or folded into the weight of the branch they feed.
//
// # LoRA
//
// InjectLoRA gives each selected layer a branch, y = x·W + dropout(x)·A·B·s
// with s = alpha/r (alpha/√r with rsLoRA), as HF PEFT and PaddleNLP compute
// it. A [in, r] and B [r, out] are initializers named
// "<module>.lora_A.weight" and "<module>.lora_B.weight", the names that
// .onnx_adapter files use. A starts Kaiming-uniform (a=√5) from a seeded
// stream, B at zero, so a fresh model computes exactly what the base does.
// The branch reads the layer's activation, so a weight behind Cast or
// Transpose is no matter; under a Gemm it reads the Gemm's first input
// (transposed where transA is set) and adds to the Gemm's output, leaving
// alpha, beta and C to the base. A
// float32 adapter on a float16 layer casts the branch's input up and its
// output down. Each site is a Site, and the model's metadata records them
// (MetadataKey), so Merge, ExtractAdapter and Summarize also work on a
// model loaded from a file. Summary counts parameters the way
// print_trainable_parameters prints them, and names the base tensors that
// train along (trainable_bias, trainable_modules) for the trainer to turn
// into inputs.
//
// Dropout is active in training only. A Dropout node (opset 12 and later) or
// the same computation from standard ops (earlier opsets) reads the bool
// graph input TrainingModeInput, whose default is false: inference feeds
// nothing, a trainer feeds true. With dropout 0 there is no node, and the
// branches need default-domain opset 7 (old IR-3 exports); dropout needs 9.
//
// Fused projections follow PaddleNLP's LoRAMergedLinear: with
// enable_lora_list and head_dim, only the enabled parts of a fused QKV
// output are updated, each by its own rank-r block. A is [in, r·k] and B
// [r, w·k] for k enabled parts of width w, exactly PaddleNLP's shapes; the
// graph expands B into a block-diagonal [r·k, n·w] matrix with a fixed 0/1
// mask, so the disabled parts get exact zeros, in training too (fused.go).
//
// # DoRA
//
// With use_dora (dora.go), each adapted layer's output feature j is
// rescaled to a trained magnitude m[j]: W'[:, j] = m[j]·V[:, j]/‖V[:, j]‖
// with V = W + s·A·B, the norm per output feature as HF PEFT takes it, and
// detached in training (DetachedValues, which the trainer marks for
// autodiff as stop-gradient values). m, "<module>.lora_magnitude_vector.weight", starts at W's
// column norms, so a fresh model computes what the base does. Merge is
// exact, and keeps ‖V‖ per output feature in the model's metadata
// (DoRAMetadataKey), with which Unmerge restores the adapted model; a
// model merged without them is refused. Embeddings and convolutions take
// DoRA as HF PEFT's DoraEmbeddingLayer and DoraConvNdLayer compute it
// (dora_layers.go): an embedding's norm is per embedding dimension over
// the vocabulary, computed from AᵀW and AᵀA without a vocab×dim
// temporary; a convolution's per output channel, its magnitude stored
// [1, out, 1…] as PEFT keeps it, and its bias left out of the rescaling.
// A QDQ weight takes DoRA on its float side (the DequantizeLinear's
// output is W), and an int4 MatMulNBits layer without a float copy of W
// (dora_nbits.go): its norm takes ‖W‖ as a constant, as an embedding's
// does, and AᵀW from the layer's own MatMulNBits node, which multiplies
// the activation's rows with Aᵀ's appended (so ONNX Runtime pre-packs the
// weight once, as for the plain layer). Merging into either is as for LoRA: Dequantize (exact,
// float; Unmerge takes it back) or, for int4, Requantize (rounded; Unmerge
// refuses it). Stacked serving factors take DoRA adapters on a stack of
// StackDoRA (see Stacked adapters), of float weights. AsInputs refuses
// DoRA.
//
// # Fused attention
//
// A com.microsoft Attention node is a linear layer too (Op "Attention",
// its packed q, k, v weight), and the MatMul that feeds
// GroupQueryAttention's packed query knows its q, k, v widths
// (Linear.PartWidths). enable_lora_list reaches those parts, laid out
// contiguously (Site.Widths) rather than PaddleNLP's head-interleaved
// layout; an Attention layer's branch updates the weight the node reads
// (no dropout), and Merge writes the update into the packed weight
// (fused_attention.go). With use_dora the node reads W' = m·V/‖V‖ of
// V = W + s·A·Bfull, its magnitude one per column of the packed weight,
// disabled parts' columns included (dora.go); the packed qkv_proj MatMul
// takes DoRA as any linear layer does.
//
// # int4 layers
//
// A com.microsoft MatMulNBits node (the onnxruntime-genai model builder's
// int4 layer) is a linear layer of K×N features; its packed weight stays
// as it is, and its LoRA branch is float, as QLoRA's is. Merging cannot
// be exact in int4, so Merge refuses it unless told how: with Dequantize
// each adapted int4 layer becomes a float MatMul holding dequantize(W) +
// s·A·B (exact), with Requantize that is rounded back into the layer's
// int4 layout, keeping the base's nodes, and MergeWith reports the
// rounding error (merge_nbits.go). Unmerge refuses int4 layers.
//
// # Merge and unmerge
//
// Merge folds each branch into its weight, W' = W + s·A·B, in float32 and
// then in W's own type, where the weight is stored (through Transpose or
// transB, divided by a Gemm's alpha), and removes everything injection
// added: the merged model has exactly the base model's nodes and
// initializers. MergeAdapter does the same for a base model and an adapter
// file. Unmerge takes the adapter, because a merged model no longer holds
// A and B: it subtracts the update and rebuilds the branches.
//
// # Adapters
//
// Apply injects a saved adapter (from_pretrained), LoRA or prefix as its
// config says, matching a LoRA adapter's module names to layers: exactly,
// else by dropping leading segments, else with self_attn read as attn (the
// onnxruntime-genai spelling). Extract pulls the adapter out of an adapted
// model, Summarize counts its parameters, and AdapterConfig reads the
// config it records without its weights; each decides between LoRA and
// prefix itself, and a model with neither is ErrNoAdapter. ApplyLoRA,
// ApplyPrefix, ExtractAdapter, ExtractPrefix and SummarizePrefix do one
// type each. ExtractValues takes the adapter's values from a trainer's
// parameters instead of the model's initializers.
//
// The records in an adapted model's metadata (MetadataKey,
// PrefixMetadataKey) are JSON with snake_case keys; records that earlier
// versions wrote, with the configs' Go field names as keys, are read too.
//
// With the AsInputs option, A and B become graph inputs whose rank is
// dynamic, with rank-0 defaults ([in, 0] and [0, out]); ONNX Runtime
// multiplies by the empty matrices and adds zeros. Fed nothing, the model
// is the base model; fed an adapter's A and B of any rank, it runs that
// adapter; one session serves them all. Because the rank changes per
// adapter, so does s: the graph has no scaling node, and Feeds folds each
// module's s into the B it returns.
//
// # Stacked adapters
//
// StackLoRA gives every linear layer (or those that target patterns
// select) a branch that reads stacked factor inputs A [K, in, R] and
// B [K, R, out] and a per-row index (StackedIndexInput, int64 [batch]):
// row b adds x·A[index[b]]·B[index[b]], so one run serves a batch whose
// rows use different adapters and ranks, the smaller ranks padded with
// zeros and the scaling folded into B (Stacked.Factors checks an adapter
// against the layers and gives its factors). Slot 0, all zeros, is the
// base. StackDoRA adds a stacked gain G [K, 1, out] per layer for DoRA
// adapters: row b computes base + (g − 1)·(base − bias) + g·x·A·B with
// g = G[index[b]] = m/‖V‖, ‖V‖ frozen and computed on the host, in
// float64, when Stacked.Factors reads the adapter; a plain LoRA adapter
// and the base are fed ones there (stacked_dora.go).
// Package serve batches requests on it.
//
// # Prefix tuning
//
// InjectPrefix gives a decoder trainable prefix keys and values. The table
// prompt_embeddings is [P, layers·2·kv_heads·head_dim], in the order of
// HF PEFT (layer i takes key 2i and value 2i+1; PaddleNLP's files, which
// put all keys before all values, are converted by package adapter), sized by the
// KV heads (multi_query_group_num), not the query heads; with
// prefix_projection it is computed by Embedding → Linear → Tanh → Linear.
// Each layer sees concat(prefix, past) where the model takes
// past_key_values (per layer, or stacked past_{i}), the presents come back
// without the prefix so generation can feed them again, attention_mask
// gets P ones in front, and position_ids continue after the prefix.
// Prefix dropout reads the bool input PrefixTrainingModeInput. ExtractPrefix
// and ApplyPrefix move the table in and out of adapter files.
//
// # Limits
//
// Layers are MatMul, Gemm, Gather (embeddings) and Conv nodes of the main
// graph with initializer weights, and MatMulNBits (int4): not
// MatMulInteger, grouped convolutions, layers inside subgraphs, nor
// weights that are Constant nodes. A layer whose output is read inside a
// subgraph cannot be adapted. A weight behind DequantizeLinear takes a
// branch, but Merge cannot be exact in int8: it refuses, or with
// Dequantize merges into a dequantized float weight (quantized.go). Tensor parallelism (tensor_parallel_degree > 1) is
// refused: an ONNX graph holds whole weights, so shards must be merged
// into one adapter first. Merge refuses a weight that other nodes share.
// Summary counts floating-point initializers only.
//
// A LoRA record read from a file is checked against the graph before
// Merge or Extract trusts it (record_check.go): its version, each site's
// layer and features, its factors' shapes (no base tensor as a factor),
// and, for Merge, that removing what it lists leaves every node input
// defined. MaxRank, MaxPrefixTokens, MaxProjectionHidden and MaxNewBytes
// bound what one injection adds (limits.go); NaN, infinity and factors
// whose product the weight's type cannot hold are refused (overflow.go).
// A model takes one PEFT type: LoRA on a prefixed model, or a prefix on
// one with LoRA, is an error.
package rewrite
