package runtime

import "github.com/peftonnx/peftonnx/dtype"

// Supported reports whether tensors of element type t can be created, fed
// and returned by this package: the numeric types of 8 to 64 bits, bool,
// float16 and bfloat16. Float16 and BFloat16 elements are stored as their
// raw 16-bit patterns in a []uint16; package
// github.com/peftonnx/peftonnx/internal/half converts them.
func Supported(t dtype.Type) bool {
	switch t {
	case dtype.Uint8, dtype.Int8, dtype.Bool,
		dtype.Uint16, dtype.Int16, dtype.Float16, dtype.BFloat16,
		dtype.Float32, dtype.Int32, dtype.Uint32,
		dtype.Float64, dtype.Int64, dtype.Uint64:
		return true
	}
	return false
}

// isHalf reports whether t is a 16-bit float type, stored as []uint16.
func isHalf(t dtype.Type) bool { return t == dtype.Float16 || t == dtype.BFloat16 }
