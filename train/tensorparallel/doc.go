// Package tensorparallel trains LoRA on a LLaMA-style decoder whose frozen
// weights are split among several ranks by tensor parallelism, as
// Megatron-LM and PaddleNLP split them (models.LlamaTensorParallel): each
// rank holds 1/N of the linear layers, the embedding and lm_head, and
// the LoRA factors follow PaddleNLP's ColumnParallelLoRALinear and
// RowParallelLoRALinear (adapter.SplitTensorParallel).
//
// # How a step runs
//
// Each rank runs the pieces of its share on ONNX Runtime one after the
// other, with a host all-reduce (train.Collective) of their partial
// outputs between them: the embedding, each layer's attention block and
// MLP block (added to the residual stream), and the head, which gives the
// rank's run of the vocabulary's logits. The causal LM loss is computed
// on the host across the vocabulary shards (the maximum, the sum of
// exponentials and the target logit of each position are all-reduced),
// and so is its gradient with respect to each rank's logits. The backward
// pass runs each piece's vector-Jacobian product (a graph of package
// autodiff that computes the piece again and its gradients), in reverse,
// with an all-reduce of the gradient of each piece's input: the forward
// copies the residual stream to every rank (identity forward, all-reduce
// backward) and sums the pieces' outputs (all-reduce forward, identity
// backward). The gradients of replicated LoRA factors (lora_A of a
// column-parallel module, lora_B of a row-parallel one) are summed over
// the ranks, those of split factors stay with their rank; the global norm
// is clipped as one process clips it, and every rank takes the AdamW
// step of its own factors.
//
// A run gives, up to float reassociation, the losses and, after
// MergeTensorParallel of every rank's Adapter, the adapter of one process
// that trains the whole model.
//
// # Limits
//
// LoRA on q/k/v/o_proj and gate/up/down_proj, or prefix tuning without
// a projection or prefix dropout; float32 models in the layout of
// models.Llama; no peftonnx train flag yet; the pieces' activations are
// recomputed in the backward pass, and each rank keeps every piece's
// input.
//
// # Prefix tuning
//
// A prefix adapter's table is split by KV heads
// (adapter.SplitTensorParallel): each rank holds, per layer, the prefix
// keys and values of its attention's heads, which its attention piece
// takes as its past (models.LlamaPieces with a cache), broadcast over the
// batch; the mask gets the prefix's ones in front and the positions move
// on by its length, as rewrite.InjectPrefix does for one process. The
// past's gradients, summed over the batch, are the table's. A run equals
// one process that trains the model with rewrite.InjectPrefix's prefix
// in place of its KV cache (PrefixReplacePast).
//
// Each rank saves its trained shard with SaveShard, PaddleNLP's way.
// SaveCheckpoint writes train.Trainer's checkpoint (rank 0 gathers the
// whole adapter's factors and AdamW moments), and Resume or
// LoadCheckpoint restarts every rank from it, each taking its shard: a
// run stopped and resumed trains what the uninterrupted run trains, bit
// for bit, and one process on the whole model resumes from such a
// checkpoint (and the other way round).
//
// Gradient accumulation divides each micro-batch's loss by what the
// whole step scores, as train.Trainer weights them, and sums the
// replicated factors' gradients over the ranks once per step; Evaluate
// gives the causal LM loss of a dataset as train.Trainer.Evaluate does.
//
// LoRA dropout draws its masks on the host (train.SeedLoRADropout), as
// train.Trainer does with Options.SeededDropout: the vector-Jacobian
// session drops what the forward session dropped, a rank that holds a
// run of a row-parallel module's input columns draws that run of one
// process's mask, and a run equals one process with SeededDropout and the
// same seed.
//
// NewWithDataParallel combines it with data parallelism (DP × TP ranks):
// the ranks that hold the same share form a data-parallel group, which
// shards each batch as train.Trainer does and sums the gradients before
// clipping.
// The frozen matrices are graph inputs, fed by reference from one Go copy
// to a piece's two sessions, so ONNX Runtime does not pre-pack them.
package tensorparallel
