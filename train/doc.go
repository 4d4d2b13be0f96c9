// Package train fine-tunes the adapter weights of an ONNX model on ONNX
// Runtime, with gradients derived by package autodiff and the optimizer in
// Go.
//
// The pieces, in the order a run uses them:
//
//   - Data: LoadJSONL reads {"input_ids","labels"}, {"text"} or
//     {"src","tgt"} lines (the last two through a Tokenizer of package
//     tokenizer, which reads a HuggingFace tokenizer.json), with a class "label" or a regression
//     "target" where the task wants one. A Loader cuts a dataset into
//     padded Batches, shuffled per epoch from a seed.
//   - Loss: CausalLMLoss, SequenceClassificationLoss and MSELoss append a
//     loss to a graph as standard ONNX ops, in the forms of the model's
//     opset (11 and later; the Trainer trains a model of opset 7 to 10,
//     such as an IR-3 export, at opset 11 where all its ops mean the same
//     there), and add a "labels" input. The causal LM loss is
//     HF's: labels align with input_ids, the shift happens inside, and the
//     loss is the mean cross entropy over labels that are not -100.
//     WithLossChunks (Options.LossChunks, 8 by default) computes an LM head
//     and that loss over chunks of the sequence, each chunk's share of the
//     gradient in the forward pass, so that the logits are never whole;
//     plain LoRA on the head (lm_head) is computed with it, DoRA there
//     takes the whole loss.
//     DetectTask picks the task from the model's outputs.
//   - Optimization: AdamW and SGD with torch semantics, Schedule with HF's
//     constant, linear and cosine schedules and warmup, ClipGradNorm as
//     torch.nn.utils.clip_grad_norm_, and AccumulateGrad for gradient
//     accumulation. Optimizer state encodes to safetensors.
//   - Trainer: puts them together. NewTrainer checks every example against
//     the model (token ids within its vocabulary, ModelVocab; class labels
//     within its classes; targets of the output's size), appends the loss,
//     builds the gradient graph (autodiff.Build) and opens one ONNX Runtime
//     session for it. Each TrainStep feeds a batch and the current
//     parameters through an rt.Binding, so that a step reuses its tensors:
//     float32 parameters are bound by reference and updated in place by the
//     optimizer, outputs are written into the same buffers every step. It
//     reads back the loss and the gradients, clips, and steps the
//     optimizer. Train adds logging, evaluation, checkpoints and early
//     stopping; Evaluate reports loss and perplexity (or accuracy);
//     SaveCheckpoint and Resume make a stopped run continue as if it had
//     not stopped; Model returns the model with the trained values, every
//     frozen tensor bit for bit the caller's; WriteLossPlot draws the loss
//     curve as a PNG.
//
// # Float16 models
//
// A model whose weights or activations are float16 or bfloat16 (such as an
// onnxruntime-genai export) trains, by default (Upcast), on a float32 copy
// of its graph: the frozen weights, constants, casts and declared types of
// the training session are converted, so that no gradient underflows in 16
// bits, and the float32 kernels of CPUs are the fast ones. Large frozen
// weights are converted by ONNX Runtime, through a Cast from their 16-bit
// initializer that it folds when the session opens. The model is
// not changed, and the adapter keeps the type it was injected with (float32
// by default: its branch casts in and out of the layer's type, and Merge
// folds it in float32). KeepHalf runs the graph in its own types instead,
// with a static loss scale, which halves the memory of frozen weights and
// activations on a GPU.
//
// # Defaults
//
// DefaultOptions holds HF Trainer's defaults: AdamW with β1=0.9, β2=0.999,
// ε=1e-8 and weight decay 0 (torch's own AdamW default decay is 0.01), a
// linear schedule without warmup, gradient clipping at norm 1.0, learning
// rate 5e-5, batch 8, 3 epochs, seed 42. As in HF, the learning rate of
// step n (from 1) is the schedule's value after n-1 steps, so with warmup
// the first step runs at rate 0. As in HF, biases and normalization
// weights do not decay.
//
// # Numerics
//
// Parameters, gradients and optimizer moments are float32 in Go, whatever
// the parameters' type in the graph (float16 and bfloat16 parameters are
// converted when fed). The optimizers follow torch's single-tensor code in
// float32, with scalars in float64, and round every product, so a run is
// bit-for-bit reproducible across platforms; torch's fused kernels may
// differ from it by a few ulps. Losses are computed in float32 in the
// graph, whatever the logits' type.
//
// Gradient accumulation weights each micro-batch by its share of the
// step's labelled tokens (labelled examples for a classifier, target
// values for a regression), so the step's gradient is that of the mean
// loss over all of them, as recent HF Trainer versions do for causal LMs.
// A batch with no labelled token has loss 0 (HF gives NaN).
//
// # Reproducibility
//
// The data order is a pure function of the seed, the epoch and the
// dataset's size (SplitMix64, not math/rand), so a checkpoint stores the
// seed and a position instead of generator state. A resumed run on the
// CPU provider gives bit-identical parameters to an uninterrupted one.
// LoRA dropout draws its masks inside ONNX Runtime, which cannot restore
// its generator: with dropout, a resumed run is statistically, not bitwise,
// the same. With Options.SeededDropout the trainer draws them instead
// (SeedLoRADropout, DropoutDraws), each a function of the seed, the
// micro-batch, the module and the position: a resumed run is then
// bit-identical too, and a data-parallel rank, or a tensor-parallel one
// (package tensorparallel, which always seeds its dropout), drops what
// one process drops.
//
// # Data parallelism
//
// With Options.Collective (package internal/mpi's world, under mpirun),
// several processes train one adapter: each rank opens its own session
// on the same frozen model, and trains on its shard of every global batch
// of BatchSize × ranks examples (Loader.Shard), so the data order is that
// of one process with the global batch. Each shard's gradient is weighted
// by its share of what the whole step scored, the gradients are summed
// over the ranks in one all-reduce before clipping
// (Trainer.AllReducedBytes), and every rank takes the same AdamW step;
// gradient accumulation sums its micro-batches first. A run on N ranks
// with batch b gives the losses and adapter of one process with batch
// N×b, up to float reassociation. Evaluation is sharded and its sums
// reduced. NewTrainer checks that every rank trains the same run (the
// same parameters, data size and options), so that ranks given different
// flags fail at once instead of hanging. Rank 0 alone writes the log and
// checkpoints; Resume reads on
// rank 0 and broadcasts, so the other ranks need no access to the
// checkpoint folder. A rank that fails must end the job (mpi.Abort):
// the others would wait for it in the next collective.
//
// # Limits
//
//   - Frozen weights in the model's external data file are read by ONNX
//     Runtime in place, but weights held in memory (a model built in Go,
//     an inline model file) are held twice: by Go and by ONNX Runtime. A
//     float16 model's frozen weights are upcast by ONNX Runtime (a Cast it
//     folds when the session opens), not in Go. A training graph whose
//     inline part passes 2 GiB is written to a temporary folder first
//     ($TMPDIR), which needs that much disk. ONNX Runtime pre-packs each frozen matrix once
//     per direction it is multiplied in, unless Options.Session turns
//     pre-packing off (runtime.WithPrepacking; peftonnx train
//     --low-memory).
//   - KeepHalf's loss scale is static: a step whose scaled gradients
//     overflow fails with an infinite gradient norm instead of being
//     skipped at a smaller scale.
//   - A regression example's target must have the output's size for that
//     example; outputs whose size follows the padded sequence length do not
//     mix with examples of different lengths.
//   - Text is encoded by package tokenizer, which implements the
//     tokenizer.json components of BPE, byte-level BPE and WordPiece
//     models and refuses files with others (see its doc).
//
// ReadJSONL reads lines of at most MaxLineBytes (16 MiB). NewTrainer
// refuses data that leaves the loss nothing to score (every label -100,
// one-token examples or a sequence length of 1 under a causal loss), and
// examples longer than the model's rotary cache (feed.RotaryLimit).
// Resuming checks the optimizer settings and step count against the
// checkpoint's.
package train
