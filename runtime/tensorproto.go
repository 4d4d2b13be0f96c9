package runtime

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// tensorFromProto decodes an initializer into a Tensor. External data is
// read relative to baseDir; with baseDir "" it is an error.
func tensorFromProto(tp *onnxpb.TensorProto, baseDir string) (*Tensor, error) {
	elem := dtype.Type(tp.GetDataType())
	if !Supported(elem) {
		return nil, fmt.Errorf("element type %s is not supported", elem)
	}
	t, err := Zeros(elem, tp.GetDims())
	if err != nil {
		return nil, err
	}
	n := t.Len()
	raw := tp.GetRawData()
	if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		raw, err = readExternal(tp, baseDir, n*elem.Size())
		if err != nil {
			return nil, err
		}
	}
	if raw != nil || tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		if len(raw) != n*elem.Size() {
			return nil, fmt.Errorf("raw data has %d bytes, want %d", len(raw), n*elem.Size())
		}
		decodeRaw(t, raw)
		return t, nil
	}
	var have int
	switch d := t.data.(type) {
	case []float32:
		copy(d, tp.GetFloatData())
		have = len(tp.GetFloatData())
	case []float64:
		copy(d, tp.GetDoubleData())
		have = len(tp.GetDoubleData())
	case []int64:
		copy(d, tp.GetInt64Data())
		have = len(tp.GetInt64Data())
	case []uint64:
		copy(d, tp.GetUint64Data())
		have = len(tp.GetUint64Data())
	case []uint32:
		narrow(d, tp.GetUint64Data())
		have = len(tp.GetUint64Data())
	case []int32:
		copy(d, tp.GetInt32Data())
		have = len(tp.GetInt32Data())
	case []int16:
		narrow(d, tp.GetInt32Data())
		have = len(tp.GetInt32Data())
	case []int8:
		narrow(d, tp.GetInt32Data())
		have = len(tp.GetInt32Data())
	case []uint8:
		narrow(d, tp.GetInt32Data())
		have = len(tp.GetInt32Data())
	case []uint16:
		narrow(d, tp.GetInt32Data())
		have = len(tp.GetInt32Data())
	case []bool:
		for i, v := range tp.GetInt32Data() {
			if i < len(d) {
				d[i] = v != 0
			}
		}
		have = len(tp.GetInt32Data())
	}
	if have != n {
		return nil, fmt.Errorf("holds %d values, want %d", have, n)
	}
	return t, nil
}

func narrow[D int16 | int8 | uint8 | uint16 | uint32, S int32 | uint64](dst []D, src []S) {
	for i := range min(len(dst), len(src)) {
		dst[i] = D(src[i])
	}
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

// readExternal reads the bytes of an initializer kept in an external data
// file, as the ONNX external data spec lays them out.
func readExternal(tp *onnxpb.TensorProto, baseDir string, size int) ([]byte, error) {
	if baseDir == "" {
		return nil, fmt.Errorf("data is in an external file, which a model given as bytes cannot reach")
	}
	var location string
	var offset int64
	length := int64(size)
	for _, kv := range tp.GetExternalData() {
		var err error
		switch kv.GetKey() {
		case "location":
			location = kv.GetValue()
		case "offset":
			offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("external data %s: %w", kv.GetKey(), err)
		}
	}
	if location == "" {
		return nil, fmt.Errorf("external data has no location")
	}
	f, err := os.Open(filepath.Join(baseDir, filepath.FromSlash(location)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, length)
	if _, err := f.ReadAt(b, offset); err != nil {
		return nil, fmt.Errorf("reading external data %s: %w", location, err)
	}
	return b, nil
}
