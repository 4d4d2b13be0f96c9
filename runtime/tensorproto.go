package runtime

import (
	"encoding/binary"
	"fmt"

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
	if err := decodeRaw(t, raw); err != nil {
		return nil, err
	}
	return t, nil
}

// decodeRaw fills t from little-endian raw bytes of the right length;
// binary.Decode reads a bool as true when its byte is not zero.
func decodeRaw(t *Tensor, raw []byte) error {
	if _, err := binary.Decode(raw, binary.LittleEndian, t.data); err != nil {
		return fmt.Errorf("decoding %s data: %w", t.elem, err)
	}
	return nil
}
