// Package session opens an ONNX Runtime session on a model and, maybe, an
// adapter: the one way from "this model, with that adapter" to something
// that runs. The command line, the trainer and the demo open their
// sessions here.
//
// Open takes a model file, OpenModel a model in memory; the options name
// an adapter (WithAdapterFile, WithAdapter) and ONNX Runtime's settings
// (WithRuntime). What the caller would otherwise have to get right:
//
//   - A LoRA adapter on a model whose factors are graph inputs (rewrite's
//     AsInputs) is fed, not applied: Session.Feeds holds its factors, with
//     the scaling folded into B, for every run. The session is then the
//     model file's own, and other adapters can be fed to it.
//   - An ONNX Runtime .onnx_adapter file whose parameters are named after
//     graph inputs of a model exported with its factors as inputs
//     (lora_param_a, lora_param_b) is fed as ONNX Runtime feeds it: each
//     parameter to the input of its name (InputParams).
//   - Any other adapter, LoRA or prefix, is applied in memory
//     (rewrite.Apply) to a copy of the model; no file is changed.
//   - A model in memory whose weights live in external data files is
//     serialized with references to them, and ONNX Runtime is told their
//     folder, so that no copy of the weights is made.
//   - A model too large for one protobuf message (2 GiB) is saved with
//     external data into a temporary folder, opened from there, and the
//     folder removed as soon as ONNX Runtime has read it (Close removes it
//     too, should that have failed).
//   - Session.Prefix is the prefix that the model carries, from its file
//     or from a prefix adapter: a prefix is a past on every run.
//
// # Errors
//
// Errors start with "session: " or come from graph, adapter, rewrite and
// runtime as they are, or wrapped; they name the model file and the
// adapter.
//
// # Limits
//
// One adapter per session, chosen when it opens (or per run through
// Feeds, on a model with adapters as inputs). A model carries LoRA or a
// prefix, not both.
package session
