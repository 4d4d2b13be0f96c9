package graph

import (
	"encoding/binary"
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/half"
)

// NumElements returns the product of dims (1 for a scalar).
func NumElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// byteSize returns the size of t's data in bytes.
func byteSize(t *onnxpb.TensorProto) (int64, error) {
	es := TypeOf(t).Size()
	if es == 0 {
		return 0, formatErrorf(t.Name, "element type %s has no fixed size", TypeOf(t))
	}
	n := int64(es)
	for _, d := range t.Dims {
		if d < 0 {
			return 0, formatErrorf(t.Name, "negative dimension in %v", t.Dims)
		}
		if d > 0 && n > math.MaxInt64/d {
			return 0, formatErrorf(t.Name, "shape %v is too large", t.Dims)
		}
		n *= d
	}
	if len(t.Dims) > 0 && NumElements(t.Dims) == 0 {
		return 0, nil
	}
	return n, nil
}

// TensorBytes returns t's data as little-endian bytes in t's element type.
// For external and raw data no copy is made: the result must not be
// modified. Data held in the typed fields (float_data, int64_data, …) is
// converted.
func (m *Model) TensorBytes(t *onnxpb.TensorProto) ([]byte, error) {
	ref, ok, err := externalRefOf(t)
	if err != nil {
		return nil, err
	}
	size, err := byteSize(t)
	if err != nil {
		return nil, err
	}
	var b []byte
	switch {
	case ok:
		if b, err = m.externalBytes(t, ref); err != nil {
			return nil, err
		}
	case len(t.RawData) > 0 || size == 0:
		b = t.RawData
	default:
		b = typedFieldBytes(t)
	}
	if int64(len(b)) != size {
		return nil, formatErrorf(t.Name, "%d bytes of data for %s %v (want %d)", len(b), TypeOf(t), t.Dims, size)
	}
	return b, nil
}

// typedFieldBytes serializes the data of the typed repeated fields.
func typedFieldBytes(t *onnxpb.TensorProto) []byte {
	var b []byte
	switch TypeOf(t) {
	case dtype.Float32:
		b = make([]byte, 0, 4*len(t.FloatData))
		for _, v := range t.FloatData {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	case dtype.Float64:
		for _, v := range t.DoubleData {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
		}
	case dtype.Int64:
		for _, v := range t.Int64Data {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	case dtype.Uint32, dtype.Uint64:
		for _, v := range t.Uint64Data {
			if TypeOf(t) == dtype.Uint32 {
				b = binary.LittleEndian.AppendUint32(b, uint32(v))
			} else {
				b = binary.LittleEndian.AppendUint64(b, v)
			}
		}
	case dtype.Int32:
		for _, v := range t.Int32Data {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
	case dtype.Float16, dtype.BFloat16, dtype.Int16, dtype.Uint16:
		// 16-bit types keep one value per int32_data entry.
		for _, v := range t.Int32Data {
			b = binary.LittleEndian.AppendUint16(b, uint16(v))
		}
	case dtype.Int8, dtype.Uint8, dtype.Bool:
		for _, v := range t.Int32Data {
			b = append(b, byte(v))
		}
	}
	return b
}

// Float32s returns t's values as float32, converting from float16,
// bfloat16 and float64. It always returns a fresh slice.
func (m *Model) Float32s(t *onnxpb.TensorProto) ([]float32, error) {
	b, err := m.TensorBytes(t)
	if err != nil {
		return nil, err
	}
	switch TypeOf(t) {
	case dtype.Float32:
		return littleEndian[float32](b), nil
	case dtype.Float16, dtype.BFloat16:
		conv := half.Float16ToFloat32
		if TypeOf(t) == dtype.BFloat16 {
			conv = half.BFloat16ToFloat32
		}
		bits := littleEndian[uint16](b)
		out := make([]float32, len(bits))
		for i, v := range bits {
			out[i] = conv(v)
		}
		return out, nil
	case dtype.Float64:
		return convertAll[float32](littleEndian[float64](b)), nil
	}
	return nil, errorf("tensor %q: %s is not a floating-point type", t.Name, TypeOf(t))
}

// Float16s returns the raw binary16 values of a float16 tensor.
func (m *Model) Float16s(t *onnxpb.TensorProto) ([]uint16, error) {
	if dt := TypeOf(t); dt != dtype.Float16 && dt != dtype.BFloat16 {
		return nil, errorf("tensor %q: %s is not a 16-bit float type", t.Name, TypeOf(t))
	}
	b, err := m.TensorBytes(t)
	if err != nil {
		return nil, err
	}
	return littleEndian[uint16](b), nil
}

// Int64s returns t's values as int64, converting from the other integer
// types.
func (m *Model) Int64s(t *onnxpb.TensorProto) ([]int64, error) {
	b, err := m.TensorBytes(t)
	if err != nil {
		return nil, err
	}
	switch TypeOf(t) {
	case dtype.Int64:
		return littleEndian[int64](b), nil
	case dtype.Int32:
		return convertAll[int64](littleEndian[int32](b)), nil
	case dtype.Int8:
		return convertAll[int64](littleEndian[int8](b)), nil
	case dtype.Uint8, dtype.Bool:
		return convertAll[int64](b), nil
	}
	return nil, errorf("tensor %q: %s is not an integer type", t.Name, TypeOf(t))
}

// Int32s returns the values of an int32 tensor.
func (m *Model) Int32s(t *onnxpb.TensorProto) ([]int32, error) {
	return valuesOf[int32](m, t, dtype.Int32)
}

// Int8s returns the values of an int8 tensor.
func (m *Model) Int8s(t *onnxpb.TensorProto) ([]int8, error) {
	return valuesOf[int8](m, t, dtype.Int8)
}

// SetFloat32s replaces t's data with values, stored in t's element type
// (float32, float16, bfloat16 or float64; narrowing rounds to nearest even).
// The tensor's data becomes inline raw data.
func SetFloat32s(t *onnxpb.TensorProto, values []float32) error {
	if int64(len(values)) != NumElements(t.Dims) {
		return errorf("tensor %q: %d values for shape %v", t.Name, len(values), t.Dims)
	}
	var b []byte
	switch TypeOf(t) {
	case dtype.Float32:
		b = make([]byte, 4*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
	case dtype.Float16, dtype.BFloat16:
		conv := half.Float32ToFloat16
		if TypeOf(t) == dtype.BFloat16 {
			conv = half.Float32ToBFloat16
		}
		b = make([]byte, 2*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint16(b[2*i:], conv(v))
		}
	case dtype.Float64:
		b = make([]byte, 8*len(values))
		for i, v := range values {
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(float64(v)))
		}
	default:
		return errorf("tensor %q: %s is not a floating-point type", t.Name, TypeOf(t))
	}
	setRaw(t, b)
	return nil
}

// setRaw makes b the inline data of t, dropping any other storage.
func setRaw(t *onnxpb.TensorProto, b []byte) {
	t.RawData = b
	t.FloatData, t.DoubleData, t.Int32Data, t.Int64Data, t.Uint64Data = nil, nil, nil, nil, nil
	t.DataLocation = onnxpb.TensorProto_DEFAULT
	t.ExternalData = nil
}

// NewFloat32Tensor returns a tensor of element type dt (float32, float16,
// bfloat16 or float64) holding values. It panics if the sizes disagree or
// dt is not a float type: that is a programming error.
func NewFloat32Tensor(name string, dt dtype.Type, dims []int64, values []float32) *onnxpb.TensorProto {
	t := &onnxpb.TensorProto{Name: name, DataType: int32(dt), Dims: append([]int64(nil), dims...)}
	if err := SetFloat32s(t, values); err != nil {
		panic(err)
	}
	return t
}

// NewFloatTensor returns a tensor of float type dt (float32, float16,
// bfloat16 or float64) holding values: exactly for float64, rounded to
// nearest even for the narrower types. Like NewFloat32Tensor, it panics
// if the sizes disagree or dt is not a float type.
func NewFloatTensor(name string, dt dtype.Type, dims []int64, values []float64) *onnxpb.TensorProto {
	if dt != dtype.Float64 {
		f := make([]float32, len(values))
		for i, v := range values {
			f[i] = float32(v)
		}
		return NewFloat32Tensor(name, dt, dims, f)
	}
	if int64(len(values)) != NumElements(dims) {
		panic(errorf("tensor %q: %d values for shape %v", name, len(values), dims))
	}
	raw := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(v))
	}
	return &onnxpb.TensorProto{Name: name, DataType: int32(dt), Dims: append([]int64(nil), dims...), RawData: raw}
}

// NewInt64Tensor returns an int64 tensor holding values. It panics if the
// sizes disagree.
func NewInt64Tensor(name string, dims []int64, values []int64) *onnxpb.TensorProto {
	if int64(len(values)) != NumElements(dims) {
		panic(errorf("tensor %q: %d values for shape %v", name, len(values), dims))
	}
	b := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return &onnxpb.TensorProto{Name: name, DataType: int32(dtype.Int64), Dims: append([]int64(nil), dims...), RawData: b}
}

// NewFloat16Tensor returns a float16 tensor holding raw binary16 values.
func NewFloat16Tensor(name string, dims []int64, values []uint16) *onnxpb.TensorProto {
	if int64(len(values)) != NumElements(dims) {
		panic(errorf("tensor %q: %d values for shape %v", name, len(values), dims))
	}
	b := make([]byte, 2*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return &onnxpb.TensorProto{Name: name, DataType: int32(dtype.Float16), Dims: append([]int64(nil), dims...), RawData: b}
}

// valuesOf returns the values of t, which must be of element type want,
// whose Go type is T.
func valuesOf[T fixedSize](m *Model, t *onnxpb.TensorProto, want dtype.Type) ([]T, error) {
	if TypeOf(t) != want {
		return nil, errorf("tensor %q: %s is not %s", t.Name, TypeOf(t), want)
	}
	b, err := m.TensorBytes(t)
	if err != nil {
		return nil, err
	}
	return littleEndian[T](b), nil
}

// fixedSize are the element types that tensor data decodes to.
type fixedSize interface {
	float32 | float64 | uint16 | int64 | int32 | int8 | uint8
}

// littleEndian decodes b as consecutive little-endian values of T into a
// fresh slice; a trailing partial value is ignored.
func littleEndian[T fixedSize](b []byte) []T {
	var zero T
	out := make([]T, len(b)/binary.Size(zero))
	// Cannot fail: b holds at least len(out) values.
	_, _ = binary.Decode(b, binary.LittleEndian, out)
	return out
}

// convertAll converts each element of xs to To, as To(x) does.
func convertAll[To, From fixedSize](xs []From) []To {
	out := make([]To, len(xs))
	for i, x := range xs {
		out[i] = To(x)
	}
	return out
}
