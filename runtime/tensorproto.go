package runtime

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// tensorFromProto decodes an initializer into a Tensor, reading its data
// through package graph: inline raw data, the typed fields, or an external
// data file in baseDir, with graph's checks (a location inside the model's
// folder, a file long enough). With baseDir "" external data is an error.
func tensorFromProto(tp *onnxpb.TensorProto, baseDir string) (*Tensor, error) {
	elem := dtype.Type(tp.GetDataType())
	if !Supported(elem) {
		return nil, fmt.Errorf("element type %s is not supported", elem)
	}
	if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL && baseDir == "" {
		return nil, fmt.Errorf("data is in an external file, which a model given as bytes cannot reach")
	}
	t, err := Zeros(elem, tp.GetDims())
	if err != nil {
		return nil, err
	}
	// A model of its own, so that graph maps the external data file for
	// this read only: the bytes are copied into t before it is closed.
	m := graph.New(&onnxpb.ModelProto{}, baseDir)
	defer m.Close()
	raw, err := m.TensorBytes(tp)
	if err != nil {
		return nil, err
	}
	decodeRaw(t, raw)
	return t, nil
}

// decodeRaw fills t from little-endian raw bytes of the right length.
func decodeRaw(t *Tensor, raw []byte) {
	le := binary.LittleEndian
	switch d := t.data.(type) {
	case []float32:
		for i := range d {
			d[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case []float64:
		for i := range d {
			d[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
	case []uint16:
		for i := range d {
			d[i] = le.Uint16(raw[2*i:])
		}
	case []int16:
		for i := range d {
			d[i] = int16(le.Uint16(raw[2*i:]))
		}
	case []int32:
		for i := range d {
			d[i] = int32(le.Uint32(raw[4*i:]))
		}
	case []uint32:
		for i := range d {
			d[i] = le.Uint32(raw[4*i:])
		}
	case []int64:
		for i := range d {
			d[i] = int64(le.Uint64(raw[8*i:]))
		}
	case []uint64:
		for i := range d {
			d[i] = le.Uint64(raw[8*i:])
		}
	case []int8:
		for i := range d {
			d[i] = int8(raw[i])
		}
	case []uint8:
		copy(d, raw)
	case []bool:
		for i := range d {
			d[i] = raw[i] != 0
		}
	}
}
