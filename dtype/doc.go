// Package dtype names the element types of tensors: one Type, numbered as
// ONNX numbers them (TensorProto.DataType), so that a type read from a
// model needs no translation.
//
// The spellings of the file formats the project reads and writes are
// methods and functions of Type: the config spelling ("float32", "fp16",
// …: String, Parse, MarshalText), the safetensors spelling ("F32", "BF16",
// …: Safetensors, ParseSafetensors) and the NumPy descriptor ("<f4",
// "|b1", …: Descr, ParseDescr).
//
// The package is a leaf: it imports nothing of the project.
package dtype
