package adapter

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
)

// maxElements bounds the element count of one tensor, so that a hostile
// shape cannot make a reader allocate without limit.
const maxElements = 1 << 40

// Tensor is a dense tensor held as float32 in row-major order. DType is the
// type it is stored with in files (dtype.Undefined means float32): float16 and bfloat16 values widen to
// float32 exactly and narrow back to the same bits, and integer values are
// held exactly (a reader refuses integers that float32 cannot hold).
type Tensor struct {
	DType dtype.Type
	Shape []int64
	Data  []float32
}

// NewTensor returns a float32 tensor of the given shape over data. It panics
// if len(data) does not match the shape: that is a programmer error.
func NewTensor(shape []int64, data []float32) *Tensor {
	n, err := numElements(shape)
	if err != nil || n != int64(len(data)) {
		panic(fmt.Sprintf("adapter: NewTensor: shape %v does not hold %d values", shape, len(data)))
	}
	return &Tensor{DType: dtype.Float32, Shape: slices.Clone(shape), Data: data}
}

// Zeros returns a float32 tensor of the given shape filled with zeros.
func Zeros(shape ...int64) *Tensor {
	n, err := numElements(shape)
	if err != nil {
		panic("adapter: Zeros: " + err.Error())
	}
	return &Tensor{DType: dtype.Float32, Shape: slices.Clone(shape), Data: make([]float32, n)}
}

// NumElements returns the product of the shape (1 for a scalar, 0 for nil).
func (t *Tensor) NumElements() int64 {
	if t == nil {
		return 0
	}
	n, _ := numElements(t.Shape)
	return n
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	if t == nil {
		return nil
	}
	return &Tensor{DType: t.DType, Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
}

// Transpose returns the transpose of a 2-D tensor, keeping its DType.
func (t *Tensor) Transpose() *Tensor {
	if len(t.Shape) != 2 {
		panic(fmt.Sprintf("adapter: Transpose of a tensor of shape %v", t.Shape))
	}
	rows, cols := int(t.Shape[0]), int(t.Shape[1])
	out := make([]float32, len(t.Data))
	for i := 0; i < rows; i++ {
		row := t.Data[i*cols : (i+1)*cols]
		for j, v := range row {
			out[j*rows+i] = v
		}
	}
	return &Tensor{DType: t.DType, Shape: []int64{t.Shape[1], t.Shape[0]}, Data: out}
}

// check reports a tensor whose shape and data disagree, whose dtype is
// unknown, or which holds a NaN or an infinity.
func (t *Tensor) check() error {
	if t == nil {
		return fmt.Errorf("tensor is nil")
	}
	if !storable(storedAs(t.DType)) {
		return fmt.Errorf("unknown dtype %d", int32(t.DType))
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return err
	}
	if n != int64(len(t.Data)) {
		return fmt.Errorf("shape %v holds %d values, data has %d", t.Shape, n, len(t.Data))
	}
	return checkFinite(t.Data)
}

// checkFinite reports the first NaN or infinity in v: an adapter that
// holds one turns every output it touches into NaN or infinity.
func checkFinite(v []float32) error {
	for i, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("value [%d] is %g: an adapter must hold finite values", i, f)
		}
	}
	return nil
}

// numElements multiplies out shape, refusing negative dims and overflow;
// a shape with a 0 is empty.
func numElements(shape []int64) (int64, error) {
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
	}
	if slices.Contains(shape, 0) {
		return 0, nil // empty, whatever the other dimensions are
	}
	n := int64(1)
	for _, d := range shape {
		if n > maxElements/d {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n *= d
	}
	return n, nil
}

// encodeData returns the little-endian bytes of data stored as d
// (dtype.Undefined: float32). Integer types require integral values in
// range.
func encodeData(d dtype.Type, data []float32) ([]byte, error) {
	d = storedAs(d)
	if !storable(d) {
		return nil, fmt.Errorf("unknown dtype %d", int32(d))
	}
	size := d.Size()
	out := make([]byte, len(data)*size)
	le := binary.LittleEndian
	for i, v := range data {
		b := out[i*size:]
		switch d {
		case dtype.Float32:
			le.PutUint32(b, math.Float32bits(v))
		case dtype.Float16:
			le.PutUint16(b, half.Float32ToFloat16(v))
		case dtype.BFloat16:
			le.PutUint16(b, half.Float32ToBFloat16(v))
		case dtype.Float64:
			le.PutUint64(b, math.Float64bits(float64(v)))
		default:
			x := float64(v)
			lo, hi := intRange(d)
			if x != math.Trunc(x) || x < lo || x > hi {
				return nil, fmt.Errorf("value %v at index %d is not a %s", v, i, d)
			}
			switch d {
			case dtype.Int64:
				le.PutUint64(b, uint64(int64(x)))
			case dtype.Int32:
				le.PutUint32(b, uint32(int32(x)))
			case dtype.Int8:
				b[0] = byte(int8(x))
			case dtype.Uint8:
				b[0] = byte(x)
			}
		}
	}
	return out, nil
}

func intRange(d dtype.Type) (lo, hi float64) {
	switch d {
	case dtype.Int8:
		return math.MinInt8, math.MaxInt8
	case dtype.Uint8:
		return 0, math.MaxUint8
	case dtype.Int32:
		return math.MinInt32, math.MaxInt32
	default:
		return math.MinInt64, math.MaxInt64
	}
}

// decodeData reads n little-endian elements of type d. Float64 values must
// fit float32's range (NaN and ±Inf pass through) and integers must be
// exactly representable in float32, so that nothing is silently changed.
func decodeData(d dtype.Type, raw []byte) ([]float32, error) {
	if !storable(d) {
		return nil, fmt.Errorf("unknown dtype %d", int32(d))
	}
	size := d.Size()
	if len(raw)%size != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %s values", len(raw), d)
	}
	n := len(raw) / size
	out := make([]float32, n)
	le := binary.LittleEndian
	for i := range out {
		b := raw[i*size:]
		switch d {
		case dtype.Float32:
			out[i] = math.Float32frombits(le.Uint32(b))
		case dtype.Float16:
			out[i] = half.Float16ToFloat32(le.Uint16(b))
		case dtype.BFloat16:
			out[i] = half.BFloat16ToFloat32(le.Uint16(b))
		case dtype.Float64:
			x := math.Float64frombits(le.Uint64(b))
			if !math.IsInf(x, 0) && math.Abs(x) > math.MaxFloat32 {
				return nil, fmt.Errorf("float64 value %v at index %d is out of float32 range", x, i)
			}
			out[i] = float32(x)
		case dtype.Int64:
			x := int64(le.Uint64(b))
			if x > 1<<24 || x < -(1<<24) {
				return nil, fmt.Errorf("int64 value %d at index %d cannot be held exactly in float32", x, i)
			}
			out[i] = float32(x)
		case dtype.Int32:
			x := int32(le.Uint32(b))
			if x > 1<<24 || x < -(1<<24) {
				return nil, fmt.Errorf("int32 value %d at index %d cannot be held exactly in float32", x, i)
			}
			out[i] = float32(x)
		case dtype.Int8:
			out[i] = float32(int8(b[0]))
		case dtype.Uint8:
			out[i] = float32(b[0])
		}
	}
	return out, nil
}
