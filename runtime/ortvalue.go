package runtime

import (
	"errors"
	"fmt"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
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
	if k, ok := dataKinds[t.elem]; ok {
		return k.wrap(t.shape, t.data)
	}
	return nil, nil, fmt.Errorf("element type %s is not supported", t.elem)
}

func (kindOf[T]) wrap(shape []int64, data any) (ort.Value, func(), error) {
	d, ok := data.([]T)
	if !ok {
		return nil, nil, fmt.Errorf("tensor data %T is not %T", data, d)
	}
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
	for _, k := range goKinds {
		if t, ok := k.over(v); ok {
			return t, nil
		}
	}
	return nil, fmt.Errorf("unsupported ONNX Runtime value %T", v)
}

func (k kindOf[T]) over(v ort.Value) (*Tensor, bool) {
	x, ok := v.(*ort.Tensor[T])
	if !ok {
		return nil, false
	}
	return &Tensor{elem: k.elem, shape: []int64(x.GetShape()), data: x.GetData()}, true
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
