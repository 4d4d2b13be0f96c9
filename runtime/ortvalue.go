package runtime

import (
	"errors"
	"fmt"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/peftonnx/peftonnx/dtype"
)

// errHalfScalar is returned for rank-0 float16 and bfloat16 tensors, which
// onnxruntime_go v1.27 cannot create: its byte-backed tensors need a shape
// with at least one dimension.
var errHalfScalar = errors.New("rank-0 float16 and bfloat16 tensors are not supported by onnxruntime_go")

// wrap returns an ONNX Runtime value over t's memory. Tensors are not
// copied: ONNX Runtime reads from and writes to t's data directly. Scalars
// are the exception; their value is copied in, and sync, when called after a
// run, copies the result back into t.
func wrap(t *Tensor) (v ort.Value, sync func(), err error) {
	if isHalf(t.elem) {
		return wrapHalf(t)
	}
	switch d := t.data.(type) {
	case []float32:
		return wrapTyped(t.shape, d)
	case []float64:
		return wrapTyped(t.shape, d)
	case []uint16:
		return wrapTyped(t.shape, d)
	case []int64:
		return wrapTyped(t.shape, d)
	case []int32:
		return wrapTyped(t.shape, d)
	case []int16:
		return wrapTyped(t.shape, d)
	case []int8:
		return wrapTyped(t.shape, d)
	case []uint8:
		return wrapTyped(t.shape, d)
	case []uint32:
		return wrapTyped(t.shape, d)
	case []uint64:
		return wrapTyped(t.shape, d)
	case []bool:
		return wrapTyped(t.shape, d)
	}
	return nil, nil, fmt.Errorf("element type %s is not supported", t.elem)
}

func wrapTyped[T ort.TensorData](shape []int64, d []T) (ort.Value, func(), error) {
	if len(shape) == 0 {
		s, err := ort.NewScalar(d[0])
		if err != nil {
			return nil, nil, err
		}
		return s, func() { d[0] = s.GetData() }, nil
	}
	v, err := ort.NewTensor(ort.Shape(shape), d)
	if err != nil {
		return nil, nil, err
	}
	return v, nil, nil
}

func wrapHalf(t *Tensor) (ort.Value, func(), error) {
	if len(t.shape) == 0 {
		return nil, nil, errHalfScalar
	}
	u := t.data.([]uint16)
	var b []byte
	if len(u) == 0 {
		// onnxruntime_go wants at least one byte even for an empty tensor.
		b = make([]byte, 2)
	} else {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&u[0])), 2*len(u))
	}
	v, err := ort.NewCustomDataTensor(ort.Shape(t.shape), b, ort.TensorElementDataType(t.elem))
	if err != nil {
		return nil, nil, err
	}
	return v, nil, nil
}

// unwrap turns a value that ONNX Runtime allocated into a Tensor. It takes
// over the Go copy of the data that onnxruntime_go made and destroys v.
func unwrap(v ort.Value) (*Tensor, error) {
	t, err := tensorOver(v)
	if v != nil {
		v.Destroy()
	}
	return t, err
}

// tensorOver returns a Tensor over the Go data of a numeric tensor that
// onnxruntime_go made, without a copy; the data outlives v's Destroy. A
// uint16 tensor comes back as Uint16: onnxruntime_go hands float16 and
// bfloat16 values over as custom data, which it refuses.
func tensorOver(v ort.Value) (*Tensor, error) {
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		return over(dtype.Float32, x), nil
	case *ort.Tensor[float64]:
		return over(dtype.Float64, x), nil
	case *ort.Tensor[uint16]:
		return over(dtype.Uint16, x), nil
	case *ort.Tensor[int64]:
		return over(dtype.Int64, x), nil
	case *ort.Tensor[int32]:
		return over(dtype.Int32, x), nil
	case *ort.Tensor[int16]:
		return over(dtype.Int16, x), nil
	case *ort.Tensor[int8]:
		return over(dtype.Int8, x), nil
	case *ort.Tensor[uint8]:
		return over(dtype.Uint8, x), nil
	case *ort.Tensor[uint32]:
		return over(dtype.Uint32, x), nil
	case *ort.Tensor[uint64]:
		return over(dtype.Uint64, x), nil
	case *ort.Tensor[bool]:
		return over(dtype.Bool, x), nil
	}
	return nil, fmt.Errorf("unsupported ONNX Runtime value %T", v)
}

func over[T ort.TensorData](elem dtype.Type, x *ort.Tensor[T]) *Tensor {
	return &Tensor{elem: elem, shape: []int64(x.GetShape()), data: x.GetData()}
}

// destroyAll destroys the non-nil values in vs.
func destroyAll(vs []ort.Value) {
	for i, v := range vs {
		if v != nil {
			v.Destroy()
			vs[i] = nil
		}
	}
}
