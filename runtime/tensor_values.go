package runtime

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
)

// FromInt64s returns a tensor of element type elem and the given shape
// holding v, converted: token ids, masks and positions in whatever type a
// model declares (int64, int32, int16, int8, the unsigned types, bool, or
// a float type). A value that elem cannot hold (300 in int8, -1 in uint8,
// 2 in bool) is an error that names its index.
func FromInt64s(elem dtype.Type, shape []int64, v []int64) (*Tensor, error) {
	return filled(elem, shape, func(t *Tensor) error { return t.SetInt64s(v) })
}

// SetInt64s writes v, converted to t's element type, into t's data; len(v)
// must be t.Len(). The conversion rules are FromInt64s's.
func (t *Tensor) SetInt64s(v []int64) error {
	if len(v) != t.Len() {
		return errorf("%d values for a %s tensor of %d elements", len(v), t.elem, t.Len())
	}
	lo, hi, ok := intRange(t.elem)
	if ok {
		for i, x := range v {
			if x < lo || x > hi {
				return errorf("value %d at index %d does not fit %s", x, i, t.elem)
			}
		}
	}
	switch d := t.data.(type) {
	case []int64:
		copy(d, v)
	case []int32:
		convertInts(d, v)
	case []int16:
		convertInts(d, v)
	case []int8:
		convertInts(d, v)
	case []uint8:
		convertInts(d, v)
	case []uint32:
		convertInts(d, v)
	case []uint64:
		convertInts(d, v)
	case []bool:
		for i, x := range v {
			d[i] = x != 0
		}
	case []float32:
		for i, x := range v {
			d[i] = float32(x)
		}
	case []float64:
		for i, x := range v {
			d[i] = float64(x)
		}
	case []uint16:
		switch t.elem {
		case dtype.Float16:
			for i, x := range v {
				d[i] = half.Float32ToFloat16(float32(x))
			}
		case dtype.BFloat16:
			for i, x := range v {
				d[i] = half.Float32ToBFloat16(float32(x))
			}
		default:
			convertInts(d, v)
		}
	default:
		return errorf("cannot write integers into a %s tensor", t.elem)
	}
	return nil
}

// FromFloat64s returns a tensor of element type elem and the given shape
// holding v, converted: for an integer or bool type, every value must be
// a whole number that the type holds.
func FromFloat64s(elem dtype.Type, shape []int64, v []float64) (*Tensor, error) {
	return filled(elem, shape, func(t *Tensor) error { return t.SetFloat64s(v) })
}

// SetFloat64s writes v, converted to t's element type, into t's data;
// len(v) must be t.Len(). The conversion rules are FromFloat64s's.
func (t *Tensor) SetFloat64s(v []float64) error {
	if len(v) != t.Len() {
		return errorf("%d values for a %s tensor of %d elements", len(v), t.elem, t.Len())
	}
	if t.elem.IsFloat() {
		switch d := t.data.(type) {
		case []float32:
			for i, x := range v {
				d[i] = float32(x)
			}
		case []float64:
			copy(d, v)
		case []uint16:
			conv := half.Float32ToFloat16
			if t.elem == dtype.BFloat16 {
				conv = half.Float32ToBFloat16
			}
			for i, x := range v {
				d[i] = conv(float32(x))
			}
		}
		return nil
	}
	ints := make([]int64, len(v))
	for i, x := range v {
		if x != math.Trunc(x) || math.IsInf(x, 0) || math.Abs(x) > 1<<62 {
			return errorf("value %v at index %d is not a whole number for %s", x, i, t.elem)
		}
		ints[i] = int64(x)
	}
	return t.SetInt64s(ints)
}

// intRange returns the values that an integer or bool element type holds;
// ok is false for float types.
func intRange(elem dtype.Type) (lo, hi int64, ok bool) {
	switch elem {
	case dtype.Int64:
		return math.MinInt64, math.MaxInt64, true
	case dtype.Int32:
		return math.MinInt32, math.MaxInt32, true
	case dtype.Int16:
		return math.MinInt16, math.MaxInt16, true
	case dtype.Int8:
		return math.MinInt8, math.MaxInt8, true
	case dtype.Uint8:
		return 0, math.MaxUint8, true
	case dtype.Uint16:
		return 0, math.MaxUint16, true
	case dtype.Uint32:
		return 0, math.MaxUint32, true
	case dtype.Uint64:
		return 0, math.MaxInt64, true
	case dtype.Bool:
		return 0, 1, true
	}
	return 0, 0, false
}

func convertInts[T int32 | int16 | int8 | uint8 | uint16 | uint32 | uint64](dst []T, src []int64) {
	for i, x := range src {
		dst[i] = T(x)
	}
}

// filled returns a new tensor of element type elem and the given shape
// whose values set writes.
func filled(elem dtype.Type, shape []int64, set func(*Tensor) error) (*Tensor, error) {
	t, err := Zeros(elem, shape)
	if err != nil {
		return nil, err
	}
	if err := set(t); err != nil {
		return nil, err
	}
	return t, nil
}
