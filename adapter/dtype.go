package adapter

import "github.com/peftonnx/peftonnx/dtype"

// storable reports whether adapter files here carry tensors of element
// type t: float32, float16, bfloat16, float64, int64, int32, int8 and
// uint8. A Tensor or config whose type is dtype.Undefined means float32.
func storable(t dtype.Type) bool {
	switch t {
	case dtype.Float32, dtype.Float16, dtype.BFloat16, dtype.Float64,
		dtype.Int64, dtype.Int32, dtype.Int8, dtype.Uint8:
		return true
	}
	return false
}

// storedAs returns the type a tensor or config of type t is written as:
// t, or float32 for dtype.Undefined.
func storedAs(t dtype.Type) dtype.Type { return t.Or(dtype.Float32) }
