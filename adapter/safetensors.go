package adapter

import (
	"bytes"
	"encoding/binary"
	"encoding/json"

	"fmt"
	"io"
	"os"
	"sort"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
)

// maxSafetensorsHeader bounds the JSON header, as the reference
// implementation does (100 MB).
const maxSafetensorsHeader = 100 << 20

// safetensorsEntry is one tensor's record in a safetensors header.
type safetensorsEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets []uint64 `json:"data_offsets"`
}

// ReadSafetensors reads every tensor of a safetensors file, and the string
// map of its "__metadata__" entry. See DecodeSafetensors for what it checks.
func ReadSafetensors(path string) (map[string]*Tensor, map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, errorf("%w", err)
	}
	tensors, meta, err := DecodeSafetensors(data)
	if err != nil {
		return nil, nil, inFile(err, path)
	}
	return tensors, meta, nil
}

// DecodeSafetensors parses a safetensors buffer: a little-endian uint64
// header length N, N bytes of JSON header, then the tensor bytes. It reads
// F32, F16, BF16, F64, I64, I32, I8 and U8 tensors into float32 (see
// Tensor). It refuses, with a *FormatError that names the tensor, a header
// length beyond the buffer, malformed or duplicate JSON keys, unknown
// dtypes, offsets out of range, a byte size that disagrees with the shape,
// tensors that overlap, and bytes that belong to no tensor.
func DecodeSafetensors(data []byte) (map[string]*Tensor, map[string]string, error) {
	if len(data) < 8 {
		return nil, nil, formatErrorf("", "", "safetensors: %d bytes is too short for the 8-byte header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if n > maxSafetensorsHeader {
		return nil, nil, formatErrorf("", "", "safetensors: header length %d exceeds the %d-byte limit", n, maxSafetensorsHeader)
	}
	if n > uint64(len(data)-8) {
		return nil, nil, formatErrorf("", "", "safetensors: header length %d exceeds the %d bytes that follow it", n, len(data)-8)
	}
	entries, order, meta, err := parseSafetensorsHeader(data[8 : 8+n])
	if err != nil {
		return nil, nil, err
	}
	buf := data[8+n:]
	type span struct {
		name       string
		begin, end uint64
	}
	spans := make([]span, 0, len(order))
	tensors := make(map[string]*Tensor, len(order))
	for _, name := range order {
		e := entries[name]
		dt, ok := dtype.ParseSafetensors(e.DType)
		if !ok || !storable(dt) {
			return nil, nil, formatErrorf("", name, "safetensors: unsupported dtype %q", e.DType)
		}
		if e.Shape == nil {
			return nil, nil, formatErrorf("", name, "safetensors: no shape")
		}
		count, err := numElements(e.Shape)
		if err != nil {
			return nil, nil, formatErrorf("", name, "safetensors: %w", err)
		}
		if len(e.DataOffsets) != 2 {
			return nil, nil, formatErrorf("", name, "safetensors: data_offsets must be [begin, end], got %v", e.DataOffsets)
		}
		begin, end := e.DataOffsets[0], e.DataOffsets[1]
		if begin > end || end > uint64(len(buf)) {
			return nil, nil, formatErrorf("", name, "safetensors: data_offsets [%d, %d] out of range of the %d-byte data buffer", begin, end, len(buf))
		}
		if want := uint64(count) * uint64(dt.Size()); end-begin != want {
			return nil, nil, formatErrorf("", name, "safetensors: shape %v of %s needs %d bytes, data_offsets [%d, %d] give %d", e.Shape, e.DType, want, begin, end, end-begin)
		}
		vals, err := decodeData(dt, buf[begin:end])
		if err != nil {
			return nil, nil, formatErrorf("", name, "safetensors: %w", err)
		}
		tensors[name] = &Tensor{DType: dt, Shape: e.Shape, Data: vals}
		spans = append(spans, span{name, begin, end})
	}
	sort.SliceStable(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].end < spans[j].end
	})
	var pos uint64
	prev := ""
	for _, s := range spans {
		if s.begin < pos {
			return nil, nil, formatErrorf("", s.name, "safetensors: data_offsets [%d, %d] overlap tensor %q, which ends at %d", s.begin, s.end, prev, pos)
		}
		if s.begin > pos {
			return nil, nil, formatErrorf("", "", "safetensors: bytes [%d, %d) of the data buffer belong to no tensor", pos, s.begin)
		}
		pos, prev = s.end, s.name
	}
	if pos != uint64(len(buf)) {
		return nil, nil, formatErrorf("", "", "safetensors: bytes [%d, %d) of the data buffer belong to no tensor", pos, len(buf))
	}
	return tensors, meta, nil
}

// parseSafetensorsHeader reads the JSON header, refusing duplicate keys
// (which encoding/json would silently merge) and trailing content.
func parseSafetensorsHeader(h []byte) (map[string]safetensorsEntry, []string, map[string]string, error) {
	bad := func(format string, args ...any) error {
		return formatErrorf("", "", "safetensors: bad header: "+format, args...)
	}
	dec := json.NewDecoder(bytes.NewReader(h))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, nil, nil, bad("not a JSON object")
	}
	entries := map[string]safetensorsEntry{}
	var order []string
	var meta map[string]string
	seenMeta := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, nil, bad("%w", err)
		}
		key, _ := tok.(string)
		if key == "__metadata__" {
			if seenMeta {
				return nil, nil, nil, bad("duplicate key %q", key)
			}
			seenMeta = true
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, nil, formatErrorf("", key, "safetensors: __metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		if _, dup := entries[key]; dup {
			return nil, nil, nil, formatErrorf("", key, "safetensors: duplicate tensor name in header")
		}
		var e safetensorsEntry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, nil, formatErrorf("", key, "safetensors: bad header entry: %w", err)
		}
		entries[key] = e
		order = append(order, key)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, nil, bad("%w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, nil, bad("content after the JSON object")
	}
	return entries, order, meta, nil
}

// EncodeSafetensors returns the safetensors encoding of tensors, each
// stored as its DType. Output is deterministic: "__metadata__" first (when
// metadata is not empty), then the tensors by element size, widest first,
// and by name, with their data in the same order; the header is padded
// with spaces to a multiple of 8 bytes, so every tensor's data is aligned
// to its element size.
func EncodeSafetensors(tensors map[string]*Tensor, metadata map[string]string) ([]byte, error) {
	names := sortedKeys(tensors)
	for _, name := range names {
		if err := tensors[name].check(); err != nil {
			return nil, formatErrorf("", name, "%w", err)
		}
	}
	// Wider elements first, as the reference writer does, so that every
	// tensor starts aligned to its element size.
	sort.SliceStable(names, func(i, j int) bool {
		return storedAs(tensors[names[i]].DType).Size() > storedAs(tensors[names[j]].DType).Size()
	})
	var header bytes.Buffer
	header.WriteByte('{')
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata) // sorted keys
		if err != nil {
			return nil, errorf("safetensors: %w", err)
		}
		header.WriteString(`"__metadata__":`)
		header.Write(m)
	}
	blobs := make([][]byte, len(names))
	var offset uint64
	for i, name := range names {
		if name == "__metadata__" {
			return nil, formatErrorf("", name, "safetensors: reserved name cannot be a tensor")
		}
		t := tensors[name]
		b, err := encodeData(t.DType, t.Data)
		if err != nil {
			return nil, formatErrorf("", name, "%w", err)
		}
		blobs[i] = b
		if header.Len() > 1 {
			header.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		header.Write(k)
		fmt.Fprintf(&header, `:{"dtype":%q,"shape":[`, storedAs(t.DType).Safetensors())
		for j, d := range t.Shape {
			if j > 0 {
				header.WriteByte(',')
			}
			header.WriteString(strconv.FormatInt(d, 10))
		}
		fmt.Fprintf(&header, `],"data_offsets":[%d,%d]}`, offset, offset+uint64(len(b)))
		offset += uint64(len(b))
	}
	header.WriteByte('}')
	for header.Len()%8 != 0 {
		header.WriteByte(' ')
	}
	out := make([]byte, 8, 8+uint64(header.Len())+offset)
	binary.LittleEndian.PutUint64(out, uint64(header.Len()))
	out = append(out, header.Bytes()...)
	for _, b := range blobs {
		out = append(out, b...)
	}
	return out, nil
}

// WriteSafetensors writes tensors to path atomically (see EncodeSafetensors).
func WriteSafetensors(path string, tensors map[string]*Tensor, metadata map[string]string) error {
	data, err := EncodeSafetensors(tensors, metadata)
	if err != nil {
		return inFile(err, path)
	}
	return writeFileAtomic(path, data)
}
