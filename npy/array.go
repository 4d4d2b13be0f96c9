package npy

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
)

// Array is an n-dimensional array as an .npy file holds it.
type Array struct {
	// DType is the element type.
	DType dtype.Type
	// Shape is the size of each axis, outermost first (C order). An empty
	// shape is a scalar, which has one element.
	Shape []int64
	// Data holds the elements in C order, each little-endian. Its length
	// is Len()*DType.Size().
	Data []byte
}

// Elem is the set of Go types that Values and New convert to and from.
// Float16 has no Go type: use Float16Bits and NewFloat16 (Values[uint16]
// is for arrays of type dtype.Uint16).
type Elem interface {
	bool | int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64 | float32 | float64
}

// DTypeOf returns the element type that holds elements of type T.
func DTypeOf[T Elem]() dtype.Type {
	var z T
	switch any(z).(type) {
	case bool:
		return dtype.Bool
	case int8:
		return dtype.Int8
	case uint8:
		return dtype.Uint8
	case int32:
		return dtype.Int32
	case int64:
		return dtype.Int64
	case int16:
		return dtype.Int16
	case uint16:
		return dtype.Uint16
	case uint32:
		return dtype.Uint32
	case uint64:
		return dtype.Uint64
	case float32:
		return dtype.Float32
	default:
		return dtype.Float64
	}
}

// numElements returns the product of shape, or false when a dimension is
// negative or the product overflows an int64.
func numElements(shape []int64) (int64, bool) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return int64(n), true
}

// dataSize returns the number of data bytes an array of this type and shape
// has, or an error when that does not fit in an int.
func dataSize(elem dtype.Type, shape []int64) (int, error) {
	n, ok := numElements(shape)
	if !ok || n > math.MaxInt/int64(elem.Size()) {
		return 0, fmt.Errorf("shape %s is too large", FormatShape(shape))
	}
	return int(n) * elem.Size(), nil
}

// Len returns the number of elements: the product of Shape.
func (a *Array) Len() int64 {
	n, _ := numElements(a.Shape)
	return n
}

// Validate checks that the DType is supported, no dimension is negative and
// Data has the length that DType and Shape call for.
func (a *Array) Validate() error {
	if !supported(a.DType) {
		return errorf("invalid dtype %d", int(a.DType))
	}
	n, err := dataSize(a.DType, a.Shape)
	if err != nil {
		return errorf("%w", err)
	}
	if len(a.Data) != n {
		return errorf("%s %s array needs %d bytes of data, has %d", a.DType, FormatShape(a.Shape), n, len(a.Data))
	}
	return nil
}

// String describes the array by type and shape, such as "float32 (2, 3)".
func (a *Array) String() string {
	return a.DType.String() + " " + FormatShape(a.Shape)
}

// FormatShape writes a shape as NumPy prints it: (2, 3), (3,) or ().
func FormatShape(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	if len(shape) == 1 {
		return "(" + parts[0] + ",)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// New returns an array of the given shape that holds a copy of values. The
// number of values must be the product of shape.
func New[T Elem](shape []int64, values []T) (*Array, error) {
	dt := DTypeOf[T]()
	n, ok := numElements(shape)
	if !ok {
		return nil, errorf("invalid shape %s", FormatShape(shape))
	}
	if int64(len(values)) != n {
		return nil, errorf("shape %s holds %d elements, got %d values", FormatShape(shape), n, len(values))
	}
	// Every Elem is fixed-size, so binary.Encode writes len(values)·size
	// bytes, a bool as 0 or 1.
	b := make([]byte, len(values)*dt.Size())
	if _, err := binary.Encode(b, binary.LittleEndian, values); err != nil {
		return nil, errorf("encoding %s values: %w", dt, err)
	}
	return &Array{DType: dt, Shape: append([]int64{}, shape...), Data: b}, nil
}

// Values returns a copy of the elements of a as type T, which must match
// a.DType exactly: no conversion is made. A bool element is true when its
// byte is not zero, as in NumPy.
func Values[T Elem](a *Array) ([]T, error) {
	if want := DTypeOf[T](); a.DType != want {
		return nil, errorf("array is %s, not %s", a.DType, want)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	// Validate checked that Data holds exactly Len elements; binary.Decode
	// reads a bool as true when its byte is not zero.
	out := make([]T, a.Len())
	if _, err := binary.Decode(a.Data, binary.LittleEndian, out); err != nil {
		return nil, errorf("decoding %s array: %w", a.DType, err)
	}
	return out, nil
}

// NewFloat16 returns a float16 array of the given shape from IEEE 754 half
// precision bit patterns.
func NewFloat16(shape []int64, bits []uint16) (*Array, error) {
	n, ok := numElements(shape)
	if !ok {
		return nil, errorf("invalid shape %s", FormatShape(shape))
	}
	if int64(len(bits)) != n {
		return nil, errorf("shape %s holds %d elements, got %d values", FormatShape(shape), n, len(bits))
	}
	b := make([]byte, 0, 2*len(bits))
	for _, v := range bits {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	return &Array{DType: dtype.Float16, Shape: append([]int64{}, shape...), Data: b}, nil
}

// Float16Bits returns the elements of a float16 array as IEEE 754 half
// precision bit patterns.
func (a *Array) Float16Bits() ([]uint16, error) {
	if a.DType != dtype.Float16 {
		return nil, errorf("array is %s, not float16", a.DType)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	out := make([]uint16, a.Len())
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(a.Data[2*i:])
	}
	return out, nil
}
