// Package graph holds an ONNX model in memory and edits it.
//
// A Model wraps the protobuf ModelProto (package onnxpb) with what a graph
// rewriter needs: loading and saving with external data, typed access to
// tensors, indexes from a value name to its producer and consumers, a
// topological order, fresh unique names, small edit operations and Validate.
// Nothing here knows about LoRA.
//
// # External data
//
// Weights stored outside the .onnx file (TensorProto.data_location EXTERNAL,
// with location/offset/length entries) stay where they are on Load: the data
// file is checked for existence and size, then memory-mapped read-only on the
// first access. A model with gigabytes of weights therefore loads in the time
// it takes to parse its graph, and its weights are read at most once. Save
// writes external data when asked, and always when the model would pass the
// 2 GiB protobuf limit.
//
// # Editing
//
// Edit through the Model's methods (AddNode, RemoveNodes, AddInitializer, …):
// they keep the indexes current. Code that changes Proto directly must call
// Reindex afterwards.
//
// # Building
//
// A Builder adds nodes, shared constants and initializers under a scope
// ("/model/layers.0/attn"), each with a name the model does not use yet,
// and tells a hook about every node it adds: the rewrites, the losses and
// the synthetic models of package models build through it. TensorInfo and
// SymbolicTensorInfo declare the graph's inputs and outputs, with fixed,
// named (Dim) or unknown dims.
//
// # Errors
//
// Errors start with "graph: " and name the file and the tensor at fault. A
// malformed model (bytes that are no ONNX model, data that disagrees with
// its dims, external data out of range, outside the model's folder or of
// another save) is a *FormatError. A missing model or external data file gives an error for
// which errors.Is(err, fs.ErrNotExist) holds, on Load or on the first read
// of a tensor.
//
// # Limits
//
// Sparse initializers are kept and saved but not read by the typed accessors.
// Tensors of type string have no typed accessor.
package graph
