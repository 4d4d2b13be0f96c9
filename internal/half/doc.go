// Package half converts between float32 and the 16-bit float formats that
// ONNX models store: IEEE 754 binary16 (float16) and bfloat16.
//
// Conversions to 16 bits round to nearest, ties to even, and keep NaN,
// infinities, signed zeros and subnormals.
package half
