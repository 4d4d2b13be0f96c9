package adapter

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// rawSafetensors builds a safetensors buffer from a header and data, for
// malformed inputs.
func rawSafetensors(header string, data []byte) []byte {
	out := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(out, uint64(len(header)))
	return append(append(out, header...), data...)
}

func TestSafetensorsRoundTrip(t *testing.T) {
	tensors := map[string]*Tensor{
		"b.f16":    {DType: dtype.Float16, Shape: []int64{2, 2}, Data: []float32{1, -2, 0.5, 65504}},
		"a.f32":    NewTensor([]int64{3}, []float32{1.5, -0.1, 3e-30}),
		"c.bf16":   {DType: dtype.BFloat16, Shape: []int64{1, 2}, Data: []float32{-0.0078125, 256}},
		"d.scalar": NewTensor(nil, []float32{7}),
		"e.empty":  NewTensor([]int64{0, 4}, []float32{}),
		"f.i64":    {DType: dtype.Int64, Shape: []int64{2}, Data: []float32{-5, 1 << 20}},
		"g.u8":     {DType: dtype.Uint8, Shape: []int64{3}, Data: []float32{0, 128, 255}},
	}
	meta := map[string]string{"format": "pt", "note": "ünïcode \"quoted\""}
	enc, err := EncodeSafetensors(tensors, meta)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(enc)
	if (8+n)%8 != 0 {
		t.Errorf("header length %d leaves the data unaligned", n)
	}
	again, _ := EncodeSafetensors(tensors, meta)
	if string(again) != string(enc) {
		t.Errorf("encoding is not deterministic")
	}
	got, gotMeta, err := DecodeSafetensors(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(tensors) {
		t.Fatalf("got %d tensors want %d", len(got), len(tensors))
	}
	for name, want := range tensors {
		if err := sameTensor(want, got[name]); err != nil {
			t.Errorf("tensor %s: %v", name, err)
		}
	}
	if gotMeta["note"] != meta["note"] || gotMeta["format"] != "pt" {
		t.Errorf("metadata: got %v want %v", gotMeta, meta)
	}
}

func TestSafetensorsGolden(t *testing.T) {
	tensors := map[string]*Tensor{
		"weight": NewTensor([]int64{2, 3}, seq(6, -1, 0.5)),
		"half":   {DType: dtype.Float16, Shape: []int64{2}, Data: []float32{1, -1}},
		"brain":  {DType: dtype.BFloat16, Shape: []int64{1}, Data: []float32{3}},
	}
	enc, err := EncodeSafetensors(tensors, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "small.safetensors", enc)
}

func TestSafetensorsAllReadDTypes(t *testing.T) {
	header := `{"f64":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},` +
		`"i32":{"dtype":"I32","shape":[1],"data_offsets":[8,12]},` +
		`"i8":{"dtype":"I8","shape":[2],"data_offsets":[12,14]},` +
		`"u8":{"dtype":"U8","shape":[2],"data_offsets":[14,16]}}`
	data := make([]byte, 16)
	binary.LittleEndian.PutUint64(data, 0x3ff8000000000000)     // 1.5
	binary.LittleEndian.PutUint32(data[8:], uint32(0xfffffff9)) // -7
	data[12], data[13], data[14], data[15] = 0x80, 0x7f, 0xff, 0x01
	got, _, err := DecodeSafetensors(rawSafetensors(header, data))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]float32{"f64": {1.5}, "i32": {-7}, "i8": {-128, 127}, "u8": {255, 1}}
	for name, w := range want {
		for i := range w {
			if got[name].Data[i] != w[i] {
				t.Errorf("%s[%d]: got %v want %v", name, i, got[name].Data[i], w[i])
			}
		}
	}
}

func TestSafetensorsErrors(t *testing.T) {
	f32 := make([]byte, 8)
	tests := []struct {
		reason string
		data   []byte
		want   string
	}{
		{"empty", nil, "too short for the 8-byte header length"},
		{"header length beyond the file", append(binary.LittleEndian.AppendUint64(nil, 1000), "{}"...), "header length 1000 exceeds the 2 bytes that follow it"},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, 1<<62), "exceeds the 104857600-byte limit"},
		{"not json", rawSafetensors("nope", nil), "not a JSON object"},
		{"json list", rawSafetensors("[]", nil), "not a JSON object"},
		{"trailing content", rawSafetensors(`{} {}`, nil), "content after the JSON object"},
		{"duplicate name", rawSafetensors(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32), `"x": safetensors: duplicate tensor name`},
		{"unknown dtype", rawSafetensors(`{"x":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, f32[:1]), `"x": safetensors: unsupported dtype "F8_E4M3"`},
		{"no shape", rawSafetensors(`{"x":{"dtype":"F32","data_offsets":[0,4]}}`, f32[:4]), `"x": safetensors: no shape`},
		{"negative dim", rawSafetensors(`{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, f32[:4]), `"x": safetensors: negative dimension in shape [-1]`},
		{"offsets out of range", rawSafetensors(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, f32[:4]), `"x": safetensors: data_offsets [0, 8] out of range of the 4-byte data buffer`},
		{"offsets reversed", rawSafetensors(`{"x":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, f32[:4]), "out of range"},
		{"one offset", rawSafetensors(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, f32[:4]), "data_offsets must be [begin, end]"},
		{"size mismatch", rawSafetensors(`{"x":{"dtype":"F32","shape":[2, 2],"data_offsets":[0,8]}}`, f32), `"x": safetensors: shape [2 2] of F32 needs 16 bytes, data_offsets [0, 8] give 8`},
		{"overlap", rawSafetensors(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32), `"y": safetensors: data_offsets [4, 8] overlap tensor "x"`},
		{"hole", rawSafetensors(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, f32), "bytes [0, 4) of the data buffer belong to no tensor"},
		{"trailing bytes", rawSafetensors(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, f32), "bytes [4, 8) of the data buffer belong to no tensor"},
		{"bad metadata", rawSafetensors(`{"__metadata__":{"a":1}}`, nil), "__metadata__ must map strings to strings"},
		{"inexact int64", rawSafetensors(`{"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, []byte{1, 0, 0, 1, 0, 0, 0, 0}), "cannot be held exactly in float32"},
	}
	for i, test := range tests {
		_, _, err := DecodeSafetensors(test.data)
		if err := errContains(err, test.want); err != nil {
			t.Errorf("test %d (%s): %v", i, test.reason, err)
		}
		var fe *FormatError
		if err != nil && !errors.As(err, &fe) {
			t.Errorf("test %d (%s): error %T is not a *FormatError", i, test.reason, err)
		}
	}
}

func TestReadSafetensorsNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(path, rawSafetensors(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,4]}}`, make([]byte, 4)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := ReadSafetensors(path)
	want := "adapter: " + path + `: "w": safetensors: shape [3] of F32 needs 12 bytes`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v want an error starting %q", err, want)
	}
	_, _, err = ReadSafetensors(filepath.Join(t.TempDir(), "missing.safetensors"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v want an error wrapping os.ErrNotExist", err)
	}
}

func TestWriteSafetensorsRefusesBadTensors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	tests := []struct {
		tensors map[string]*Tensor
		want    string
	}{
		{map[string]*Tensor{"w": {Shape: []int64{2}, Data: []float32{1}}}, `"w": shape [2] holds 2 values, data has 1`},
		{map[string]*Tensor{"w": {DType: dtype.Int8, Shape: []int64{1}, Data: []float32{0.5}}}, `"w": value 0.5 at index 0 is not a int8`},
		{map[string]*Tensor{"__metadata__": NewTensor(nil, []float32{1})}, "reserved name"},
	}
	for i, test := range tests {
		err := WriteSafetensors(path, test.tensors, nil)
		if err := errContains(err, test.want); err != nil {
			t.Errorf("test %d: %v", i, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("test %d: a failed write left %d files behind", i, len(entries))
		}
	}
}
