package half

import "github.com/peftonnx/peftonnx/dtype"

// RoundTo rounds v to the nearest value of element type d: float16 and
// bfloat16 round, and any other type returns v as it is.
func RoundTo(d dtype.Type, v float32) float32 {
	switch d {
	case dtype.Float16:
		return Float16ToFloat32(Float32ToFloat16(v))
	case dtype.BFloat16:
		return BFloat16ToFloat32(Float32ToBFloat16(v))
	}
	return v
}
