// Package adapter holds PEFT adapters as data, their configs and named
// weight tensors, and reads and writes them in the formats the ecosystem
// uses. It knows nothing about graphs: package rewrite applies what it
// holds.
//
// # Layouts
//
// Inside an Adapter every tensor is in graph layout: LoRA A is [in, r] and
// B is [r, out], so the branch computes x·A·B·scaling. Files use other
// layouts, and conversion happens only here, at the file boundary:
//
//   - HuggingFace PEFT directory (SaveDir, LoadDir): adapter_config.json and
//     adapter_model.safetensors, with "base_model.model.<module>.lora_A.weight"
//     [r, in] and "...lora_B.weight" [out, r] (torch's Linear layout), or
//     "prompt_embeddings" [P, layers·2·kv_heads·head_dim] for prefix tuning.
//   - PaddleNLP directory (SavePaddleDir, LoadDir): lora_config.json and
//     lora_model_state.pdparams with "<module>.lora_A" [in, r] and
//     "<module>.lora_B" [r, out], graph layout; or prefix_config.json,
//     prefix_model_state.pdparams (the prefix encoder, "0.weight" …) and
//     pre_caches.npy. Its prefix table orders columns keys first, then
//     values; peftonnx's, HF PEFT's, pairs each layer's key and value.
//   - .pdparams (ReadPdparams, WritePdparams): paddle.save's pickle of a
//     state dict, read and written by internal/pickle, which executes
//     nothing; bfloat16 travels as uint16, as in paddle.
//   - ONNX Runtime .onnx_adapter (ReadONNXAdapter, WriteONNXAdapter): a
//     flatbuffer of named raw tensors, "<module>.lora_A.weight" [in, r] and
//     "<module>.lora_B.weight" [r, out]: the graph inputs of a model whose
//     adapters are inputs. ONNX Runtime 1.20 and later read the "TORT"
//     layout; the older "GAIL" layouts of onnxruntime-genai are read and
//     written too, byte for byte.
//   - safetensors (ReadSafetensors, WriteSafetensors) on its own.
//
// Tensors hold float32 in memory and remember the dtype they are stored
// with; float16 and bfloat16 round-trip bit for bit.
//
// # Configs
//
// LoRAConfig carries PaddleNLP's LoRAConfig fields and HuggingFace PEFT's;
// target modules are regular expressions that must match a whole module
// name, as in PaddleNLP. PrefixConfig carries PaddleNLP's PrefixConfig, with
// the table sized by key/value heads. Fields PEFT has no key for are kept in
// a nested "peftonnx" object of adapter_config.json.
//
// # Errors
//
// Errors start with "adapter: ". Malformed or inconsistent files give a
// *FormatError naming the file and the tensor or key at fault. A missing
// file or folder (an adapter, its config or its weights) gives an error
// for which errors.Is(err, fs.ErrNotExist) holds. Writes go to
// a temporary file in the target directory and are renamed into place, so
// a failed write leaves nothing half-written.
//
// # Limits
//
// Embeddings and convolutions take LoRA in HF PEFT's layout only
// (lora_embedding_A/B; lora_A/B.weight of rank 3 to 5); PaddleNLP's
// layout is written for linear layers. DoRA (use_dora) keeps each
// module's magnitude in LoRAWeights.Magnitude, stored in the HF layout as
// "base_model.model.<module>.lora_magnitude_vector.weight" [out], [dim]
// for an embedding and [1, out, 1…] for a convolution, PEFT's shapes (PEFT
// 0.12 and later; the older "….lora_magnitude_vector" is read too);
// .onnx_adapter files, which carry no config and so no scaling, and
// PaddleNLP, which has no DoRA, refuse it. Not supported: PEFT's
// lora_bias, encoder-decoder prefix tuning and PyTorch .bin weights.
// LoadDir refuses PaddleNLP's
// tensor-parallel shards (lora_model_state.tp00.pdparams, …), which must be
// merged first: LoadPaddleShards merges LoRA shards, and SavePaddleShards
// splits an adapter into them, by PaddleNLP's column- and row-parallel
// layers (TensorParallelSplit); prefix shards, fused projections and
// extra tensors have no shard layout here.
// Extra tensors (biases, trainable modules) are stored verbatim, without
// transposition, except in PaddleNLP's layout, which transposes the weight
// of a LoRA module and refuses other 2-D extra tensors (a Linear's and an
// Embedding's cannot be told apart there). The .onnx_adapter format carries no LoRA config: reading
// one derives r from the shapes and sets alpha to r.
package adapter
