package runtime

import (
	"reflect"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/peftonnx/peftonnx/dtype"
)

// A tensor's data is a slice that makeData made, held as an any. The Go
// slice types it may be, and what the package does with each, are one
// table: dataKinds, keyed by element type, with kindOf[T] for []T. Its
// copyAt copies between two of them without a boxed slice in between,
// which the cache moves of generation do per row and position (they look
// the kind up once per move); sliceAt and dataLen, which run once per
// step, ask reflect.

// dataKind is what the package does with the data of one Go slice type.
type dataKind interface {
	// make allocates a zeroed slice of n elements.
	make(n int) any
	// holds reports whether data is this slice type.
	holds(data any) bool
	// copyAt copies n elements of src from index soff into dst from
	// index doff; both are this slice type.
	copyAt(dst any, doff int, src any, soff, n int)
	// wrap returns an ONNX Runtime value over data (ortvalue.go).
	wrap(shape []int64, data any) (ort.Value, func(), error)
	// over returns a Tensor over v's Go data when v holds this element
	// type (ortvalue.go).
	over(v ort.Value) (*Tensor, bool)
	// elemType is the element type of a tensor that ONNX Runtime hands
	// over as this slice type.
	elemType() dtype.Type
}

// kindOf is the dataKind of []T; elem is its elemType.
type kindOf[T ort.TensorData] struct{ elem dtype.Type }

// goKinds are the Go slice types of tensor data, one each.
var goKinds = []dataKind{
	kindOf[float32]{dtype.Float32},
	kindOf[float64]{dtype.Float64},
	kindOf[uint16]{dtype.Uint16},
	kindOf[int64]{dtype.Int64},
	kindOf[int32]{dtype.Int32},
	kindOf[int16]{dtype.Int16},
	kindOf[int8]{dtype.Int8},
	kindOf[uint8]{dtype.Uint8},
	kindOf[uint32]{dtype.Uint32},
	kindOf[uint64]{dtype.Uint64},
	kindOf[bool]{dtype.Bool},
}

// dataKinds maps each element type a Tensor holds to the kind of its
// data; float16 and bfloat16 keep their bits in a []uint16.
var dataKinds = func() map[dtype.Type]dataKind {
	m := map[dtype.Type]dataKind{}
	for _, k := range goKinds {
		m[k.elemType()] = k
	}
	m[dtype.Float16], m[dtype.BFloat16] = m[dtype.Uint16], m[dtype.Uint16]
	return m
}()

func (k kindOf[T]) elemType() dtype.Type { return k.elem }

func (kindOf[T]) make(n int) any { return make([]T, n) }

func (kindOf[T]) holds(data any) bool {
	_, ok := data.([]T)
	return ok
}

func (kindOf[T]) copyAt(dst any, doff int, src any, soff, n int) {
	copy(dst.([]T)[doff:doff+n], src.([]T)[soff:soff+n])
}

// makeData allocates a zeroed slice of n elements of dtype.
func makeData(elem dtype.Type, n int) (any, error) {
	k, ok := dataKinds[elem]
	if !ok {
		return nil, errorf("element type %s is not supported", elem)
	}
	return k.make(n), nil
}

// dataMatches reports whether data is the slice type that holds dtype.
func dataMatches(elem dtype.Type, data any) bool {
	k, ok := dataKinds[elem]
	return ok && k.holds(data)
}

// sliceAt returns data[lo:hi].
func sliceAt(data any, lo, hi int) any {
	return reflect.ValueOf(data).Slice(lo, hi).Interface()
}

// sliceData returns the first n elements of data.
func sliceData(data any, n int) any { return sliceAt(data, 0, n) }

// dataLen returns the length of data, 0 for nil.
func dataLen(data any) int {
	if data == nil {
		return 0
	}
	return reflect.ValueOf(data).Len()
}
