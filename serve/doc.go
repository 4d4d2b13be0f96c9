// Package serve is the serving engine: one base model, loaded once, and any
// number of adapters (LoRA from HF PEFT folders, .onnx_adapter files and
// the PaddleNLP layout; prefix adapters as precomputed past keys and
// values), each request naming its adapter. Requests are batched together
// (continuous batching): a decoding step runs every active sequence, and
// sequences join and leave at step boundaries. Rows of one batch may use
// different adapters: the base graph is rewritten to take stacked LoRA
// factors and a per-row adapter index (rewrite.StackLoRA), so one forward
// pass serves them all, and the base weights are never copied per adapter.
//
// An adapter that does not fit the base is refused at Load with an error
// that wraps ErrAdapterMismatch and says what does not fit; a request for
// an adapter that is not loaded gets ErrUnknownAdapter with the list of
// those that are. Nothing ever falls back to the base silently.
//
// The HTTP layer is serve/openai; api.go is the contract between them.
//
// # Limits
//
// The engine runs decoders with past_key_values caches, attention_mask and
// position_ids inputs: rows join a batch padded on the left, so a model
// that computes its positions itself (GPT-2 exports without position_ids)
// is served one sequence at a time. Prefix adapters need per-layer
// past_key_values.{i}.key/value caches. LoRA adapters with fused
// projections (PaddleNLP's enable_lora_list) or trained base tensors are
// refused. DoRA adapters (use_dora) need Options.DoRA (peftonnx serve
// --dora), which builds the base with rewrite.StackDoRA: each stacked
// layer also rescales its output features by the row's adapter's gain
// m/‖W + s·A·B‖, computed on the host when the adapter is read (from the
// base's weights in its external data file, kept mapped: no copy), at a
// cost on every step: on LlamaMini, one client, 1.18× the plain engine's time
// per token on the base and 1.22× on a LoRA adapter, a DoRA adapter the
// same as a LoRA one (BenchmarkServeDoRA; the project README's table). The prompts of the requests that join at one step are prefilled
// together (one run per prefix they start from) before they join the
// batch; the stacked factors are rebuilt when an adapter takes a free slot.
package serve
