package runtime

import (
	"fmt"
	"math"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
)

// Tensor is a dense tensor in Go memory: an element type, a shape and a flat
// slice of elements in row-major order.
//
// A Tensor fed to a run is handed to ONNX Runtime without a copy, so its data
// must not change while the run is in progress. A rank-0 tensor (a scalar)
// has an empty shape and one element. Dimensions may be 0.
type Tensor struct {
	elem  dtype.Type
	shape []int64
	data  any
}

// NewFloat32 returns a float32 tensor of the given shape backed by data,
// which it does not copy. len(data) must equal the product of shape; a nil
// or empty shape makes a scalar.
func NewFloat32(shape []int64, data []float32) (*Tensor, error) {
	return newTensor(dtype.Float32, shape, data, len(data))
}

// NewFloat16 returns a float16 tensor backed by data, whose elements are
// IEEE 754 binary16 bit patterns. See NewFloat32 for the rules on shape.
func NewFloat16(shape []int64, data []uint16) (*Tensor, error) {
	return newTensor(dtype.Float16, shape, data, len(data))
}

// NewFloat16FromFloat32 returns a float16 tensor holding data rounded to
// float16, to nearest even.
func NewFloat16FromFloat32(shape []int64, data []float32) (*Tensor, error) {
	h := make([]uint16, len(data))
	for i, v := range data {
		h[i] = half.Float32ToFloat16(v)
	}
	return NewFloat16(shape, h)
}

// NewBFloat16 returns a bfloat16 tensor backed by data, whose elements are
// bfloat16 bit patterns.
func NewBFloat16(shape []int64, data []uint16) (*Tensor, error) {
	return newTensor(dtype.BFloat16, shape, data, len(data))
}

// NewFloat64 returns a float64 tensor backed by data.
func NewFloat64(shape []int64, data []float64) (*Tensor, error) {
	return newTensor(dtype.Float64, shape, data, len(data))
}

// NewInt64 returns an int64 tensor backed by data.
func NewInt64(shape []int64, data []int64) (*Tensor, error) {
	return newTensor(dtype.Int64, shape, data, len(data))
}

// NewInt32 returns an int32 tensor backed by data.
func NewInt32(shape []int64, data []int32) (*Tensor, error) {
	return newTensor(dtype.Int32, shape, data, len(data))
}

// NewInt8 returns an int8 tensor backed by data.
func NewInt8(shape []int64, data []int8) (*Tensor, error) {
	return newTensor(dtype.Int8, shape, data, len(data))
}

// NewUint8 returns a uint8 tensor backed by data.
func NewUint8(shape []int64, data []uint8) (*Tensor, error) {
	return newTensor(dtype.Uint8, shape, data, len(data))
}

// NewBool returns a bool tensor backed by data.
func NewBool(shape []int64, data []bool) (*Tensor, error) {
	return newTensor(dtype.Bool, shape, data, len(data))
}

// Zeros returns a tensor of the given type and shape filled with zeros.
func Zeros(elem dtype.Type, shape []int64) (*Tensor, error) {
	n, err := numElements(shape)
	if err != nil {
		return nil, err
	}
	data, err := makeData(elem, n)
	if err != nil {
		return nil, err
	}
	return &Tensor{elem: elem, shape: cloneShape(shape), data: data}, nil
}

// newTensor checks that data has the Go type of elem and n elements, as the
// shape requires, and wraps it.
func newTensor(elem dtype.Type, shape []int64, data any, n int) (*Tensor, error) {
	want, err := numElements(shape)
	if err != nil {
		return nil, err
	}
	if n != want {
		return nil, errorf("%s tensor of shape %v needs %d elements, got %d",
			elem, shapeString(shape), want, n)
	}
	if !dataMatches(elem, data) {
		return nil, errorf("%T cannot hold %s elements", data, elem)
	}
	return &Tensor{elem: elem, shape: cloneShape(shape), data: data}, nil
}

// numElements returns the product of shape, checking that no dimension is
// negative and that the product fits an int; a shape with a 0 is empty.
func numElements(shape []int64) (int, error) {
	for i, d := range shape {
		if d < 0 {
			return 0, errorf("shape %v has negative dimension %d at axis %d",
				shapeString(shape), d, i)
		}
	}
	if slices.Contains(shape, 0) {
		return 0, nil // empty, whatever the other dimensions are
	}
	n := int64(1)
	for _, d := range shape {
		if n > math.MaxInt/d {
			return 0, errorf("shape %v has too many elements", shapeString(shape))
		}
		n *= d
	}
	return int(n), nil
}

// DType returns the element type.
func (t *Tensor) DType() dtype.Type { return t.elem }

// Shape returns a copy of the shape. A scalar has an empty shape.
func (t *Tensor) Shape() []int64 { return cloneShape(t.shape) }

// Rank returns the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// Len returns the number of elements.
func (t *Tensor) Len() int {
	n := 1
	for _, d := range t.shape {
		n *= int(d)
	}
	return n
}

// Data returns the backing slice: []float32, []float64, []uint16 (float16,
// bfloat16 and uint16), []int64, []int32, []int16, []int8, []uint8,
// []uint32, []uint64 or []bool.
func (t *Tensor) Data() any { return t.data }

// Float32 returns the backing slice of a float32 tensor. It panics if the
// tensor holds another type, as a type assertion would.
func (t *Tensor) Float32() []float32 { t.must(dtype.Float32); return t.data.([]float32) }

// Float16 returns the backing slice of a float16 tensor, as bit patterns.
func (t *Tensor) Float16() []uint16 { t.must(dtype.Float16); return t.data.([]uint16) }

// BFloat16 returns the backing slice of a bfloat16 tensor, as bit patterns.
func (t *Tensor) BFloat16() []uint16 { t.must(dtype.BFloat16); return t.data.([]uint16) }

// Float64 returns the backing slice of a float64 tensor.
func (t *Tensor) Float64() []float64 { t.must(dtype.Float64); return t.data.([]float64) }

// Int64 returns the backing slice of an int64 tensor.
func (t *Tensor) Int64() []int64 { t.must(dtype.Int64); return t.data.([]int64) }

// Int32 returns the backing slice of an int32 tensor.
func (t *Tensor) Int32() []int32 { t.must(dtype.Int32); return t.data.([]int32) }

// Int8 returns the backing slice of an int8 tensor.
func (t *Tensor) Int8() []int8 { t.must(dtype.Int8); return t.data.([]int8) }

// Uint8 returns the backing slice of a uint8 tensor.
func (t *Tensor) Uint8() []uint8 { t.must(dtype.Uint8); return t.data.([]uint8) }

// Bool returns the backing slice of a bool tensor.
func (t *Tensor) Bool() []bool { t.must(dtype.Bool); return t.data.([]bool) }

func (t *Tensor) must(d dtype.Type) {
	if t.elem != d {
		panic(fmt.Sprintf("runtime: %s accessor called on a %s tensor", d, t.elem))
	}
}

// ToFloat32 returns the elements converted to float32, in a new slice. Bool
// converts to 0 and 1.
func (t *Tensor) ToFloat32() []float32 {
	out := make([]float32, t.Len())
	switch d := t.data.(type) {
	case []float32:
		copy(out, d)
	case []uint16:
		for i, v := range d {
			switch t.elem {
			case dtype.Float16:
				out[i] = half.Float16ToFloat32(v)
			case dtype.BFloat16:
				out[i] = half.BFloat16ToFloat32(v)
			default:
				out[i] = float32(v)
			}
		}
	default:
		for i, v := range t.ToFloat64() {
			out[i] = float32(v)
		}
	}
	return out
}

// ToFloat64 returns the elements converted to float64, in a new slice. Bool
// converts to 0 and 1.
func (t *Tensor) ToFloat64() []float64 {
	out := make([]float64, t.Len())
	switch d := t.data.(type) {
	case []float32:
		convert(out, d)
	case []float64:
		copy(out, d)
	case []uint16:
		if t.elem == dtype.Uint16 {
			convert(out, d)
			break
		}
		for i, v := range t.ToFloat32() {
			out[i] = float64(v)
		}
	case []int64:
		convert(out, d)
	case []int32:
		convert(out, d)
	case []int16:
		convert(out, d)
	case []int8:
		convert(out, d)
	case []uint8:
		convert(out, d)
	case []uint32:
		convert(out, d)
	case []uint64:
		convert(out, d)
	case []bool:
		for i, v := range d {
			if v {
				out[i] = 1
			}
		}
	}
	return out
}

func convert[T float32 | int64 | int32 | int16 | int8 | uint8 | uint16 | uint32 | uint64](dst []float64, src []T) {
	for i, v := range src {
		dst[i] = float64(v)
	}
}

// Clone returns a deep copy of the tensor.
func (t *Tensor) Clone() *Tensor {
	c, _ := Zeros(t.elem, t.shape)
	dataKinds[t.elem].copyAt(c.data, 0, t.data, 0, t.Len())
	return c
}

// String describes the tensor's type and shape, as in "float32[2 3]".
func (t *Tensor) String() string {
	return t.elem.String() + shapeString(t.shape)
}

func cloneShape(s []int64) []int64 {
	c := make([]int64, len(s))
	copy(c, s)
	return c
}

// shapeString formats a shape as [2 -1 3]; a scalar prints as [].
func shapeString(s []int64) string {
	return fmt.Sprint(s)
}
