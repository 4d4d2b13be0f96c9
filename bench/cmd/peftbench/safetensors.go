package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/atomicfile"
)

// stTensor is one tensor of a safetensors file: float32 (F32) or int64
// (I64) values, row-major.
type stTensor struct {
	Shape []int64
	F32   []float32
	I64   []int64
}

// writeSafetensors writes tensors to path (atomically, through a temporary
// file beside it) in the safetensors layout: an 8-byte little-endian header
// length, the JSON header, then the tensors' bytes in name order.
func writeSafetensors(path string, tensors map[string]stTensor, meta map[string]string) error {
	names := slices.Sorted(maps.Keys(tensors))
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, n := range names {
		t := tensors[n]
		dt, size := dtype.Float32, int64(4*len(t.F32))
		if t.I64 != nil {
			dt, size = dtype.Int64, int64(8*len(t.I64))
		}
		header[n] = map[string]any{"dtype": dt.Safetensors(), "shape": nonNilShape(t.Shape), "data_offsets": []int64{off, off + size}}
		off += size
	}
	h, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("peftbench: %s: %w", path, err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	tmp, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return fmt.Errorf("peftbench: %w", err)
	}
	defer tmp.Abort() // a no-op once committed
	w := bufio.NewWriterSize(tmp, 1<<20)
	var n8 [8]byte
	binary.LittleEndian.PutUint64(n8[:], uint64(len(h)))
	w.Write(n8[:])
	w.Write(h)
	buf := make([]byte, 8)
	for _, n := range names {
		t := tensors[n]
		for _, v := range t.F32 {
			binary.LittleEndian.PutUint32(buf, math.Float32bits(v))
			w.Write(buf[:4])
		}
		for _, v := range t.I64 {
			binary.LittleEndian.PutUint64(buf, uint64(v))
			w.Write(buf)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("peftbench: %s: %w", path, err)
	}
	if err := tmp.Commit(); err != nil {
		return fmt.Errorf("peftbench: %w", err)
	}
	return nil
}

func nonNilShape(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

// readSafetensors reads the F32 and I64 tensors of a safetensors file and
// its metadata.
func readSafetensors(path string) (map[string]stTensor, map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("peftbench: %w", err)
	}
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("peftbench: %s: too short for safetensors", path)
	}
	n := binary.LittleEndian.Uint64(data)
	if n > uint64(len(data)-8) {
		return nil, nil, fmt.Errorf("peftbench: %s: header length %d past the end", path, n)
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &header); err != nil {
		return nil, nil, fmt.Errorf("peftbench: %s: header: %w", path, err)
	}
	body := data[8+n:]
	out := map[string]stTensor{}
	var meta map[string]string
	for name, raw := range header {
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, fmt.Errorf("peftbench: %s: metadata: %w", path, err)
			}
			continue
		}
		var e struct {
			DType   string   `json:"dtype"`
			Shape   []int64  `json:"shape"`
			Offsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, nil, fmt.Errorf("peftbench: %s: tensor %q: %w", path, name, err)
		}
		if len(e.Offsets) != 2 || e.Offsets[0] > e.Offsets[1] || e.Offsets[1] > uint64(len(body)) {
			return nil, nil, fmt.Errorf("peftbench: %s: tensor %q: bad offsets %v", path, name, e.Offsets)
		}
		b := body[e.Offsets[0]:e.Offsets[1]]
		t := stTensor{Shape: slices.Clone(e.Shape)}
		switch dt, _ := dtype.ParseSafetensors(e.DType); dt {
		case dtype.Float32:
			t.F32 = make([]float32, len(b)/4)
			for i := range t.F32 {
				t.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
		case dtype.Int64:
			t.I64 = make([]int64, len(b)/8)
			for i := range t.I64 {
				t.I64[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
			}
		default:
			return nil, nil, fmt.Errorf("peftbench: %s: tensor %q: dtype %s (want F32 or I64)", path, name, e.DType)
		}
		out[name] = t
	}
	return out, meta, nil
}
