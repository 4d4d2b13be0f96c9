// Package train fine-tunes the adapter weights of an ONNX model on ONNX
// Runtime, with gradients derived by package autodiff and the optimizer in
// Go.
//
// The pieces, in the order a run uses them:
//
//   - Data: LoadJSONL reads {"input_ids","labels"}, {"text"} or
//     {"src","tgt"} lines (the last two through a Tokenizer, which loads a
//     HuggingFace tokenizer.json). Dataset.CheckVocab refuses token ids the
//     model cannot embed. A Loader cuts a dataset into padded Batches,
//     shuffled per epoch from a seed.
//   - Loss: CausalLMLoss, SequenceClassificationLoss and MSELoss append a
//     loss to a graph as standard ONNX ops, in the forms of the model's
//     opset (11 and later), and add a "labels" input. The causal LM loss is
//     HF's: labels align with input_ids, the shift happens inside, and the
//     loss is the mean cross entropy over labels that are not -100.
//   - Optimization: AdamW and SGD with torch semantics, Schedule with HF's
//     constant, linear and cosine schedules and warmup, ClipGradNorm as
//     torch.nn.utils.clip_grad_norm_, and AccumulateGrad for gradient
//     accumulation. Optimizer state encodes to safetensors.
//   - Trainer: puts them together. NewTrainer appends the loss, builds the
//     gradient graph (autodiff.Build) and opens one ONNX Runtime session
//     for it; each TrainStep feeds a batch and the current parameters, reads
//     back the loss and the gradients, clips, and steps the optimizer.
//     Evaluate reports loss and perplexity; SaveCheckpoint and Resume make
//     a stopped run continue as if it had not stopped.
//
// # Defaults
//
// DefaultOptions holds HF Trainer's defaults: AdamW with β1=0.9, β2=0.999,
// ε=1e-8 and weight decay 0 (torch's own AdamW default decay is 0.01), a
// linear schedule without warmup, gradient clipping at norm 1.0, learning
// rate 5e-5, batch 8, 3 epochs, seed 42. As in HF, the learning rate of
// step n (from 1) is the schedule's value after n-1 steps, so with warmup
// the first step runs at rate 0.
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
// step's labelled tokens, so the step's gradient is that of the mean loss
// over all of them, as recent HF Trainer versions do for causal LMs. A
// batch with no labelled token has loss 0 (HF gives NaN).
//
// # Reproducibility
//
// The data order is a pure function of the seed, the epoch and the
// dataset's size (SplitMix64, not math/rand), so a checkpoint stores the
// seed and a position instead of generator state. A resumed run on the
// CPU provider gives bit-identical parameters to an uninterrupted one.
// LoRA dropout draws its masks inside ONNX Runtime, which cannot restore
// its generator: with dropout, a resumed run is statistically, not bitwise,
// the same.
//
// # Limits
//
//   - The Trainer runs the causal LM task only; the other losses are
//     building blocks.
//   - The model is handed to ONNX Runtime as one serialized buffer, so it
//     must fit the 2 GiB protobuf limit with its weights inline.
//   - PaddleNLP's LoRA+ (a separate learning rate for B) is not applied.
//   - sugarme/tokenizer does not implement every tokenizer.json feature;
//     byte fallback is added here, and tokenizers of other families should
//     be checked against HF before training on them.
package train
