package npy

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// TestReadNumpyFiles reads the files that testdata/gen_numpy.py made with
// numpy.save.
func TestReadNumpyFiles(t *testing.T) {
	for _, test := range []struct {
		file   string
		elem   dtype.Type
		shape  []int64
		values any // what Values returns; for float16, what Float16Bits returns
	}{
		{"f4_2x3.npy", dtype.Float32, []int64{2, 3}, []float32{0, 0.25, 0.5, 0.75, 1, 1.25}},
		{"f2_3.npy", dtype.Float16, []int64{3}, []uint16{0x3c00, 0xc000, 0x3800}},
		{"f8_scalar.npy", dtype.Float64, []int64{}, []float64{3.5}},
		{"i8_1x8.npy", dtype.Int64, []int64{1, 8}, []int64{-3, -2, -1, 0, 1, 2, 3, 4}},
		{"i4_2x2.npy", dtype.Int32, []int64{2, 2}, []int32{-2147483648, -1, 0, 2147483647}},
		{"i1_4.npy", dtype.Int8, []int64{4}, []int8{-128, -1, 0, 127}},
		{"u1_4.npy", dtype.Uint8, []int64{4}, []uint8{0, 1, 128, 255}},
		{"i2_2.npy", dtype.Int16, []int64{2}, []int16{-32768, 32767}},
		{"u2_2.npy", dtype.Uint16, []int64{2}, []uint16{0, 65535}},
		{"u4_2.npy", dtype.Uint32, []int64{2}, []uint32{0, 4294967295}},
		{"u8_2.npy", dtype.Uint64, []int64{2}, []uint64{0, 18446744073709551615}},
		{"b1_3.npy", dtype.Bool, []int64{3}, []bool{true, false, true}},
		{"f4_0x3.npy", dtype.Float32, []int64{0, 3}, []float32{}},
		{"f4_v2.npy", dtype.Float32, []int64{2}, []float32{1.5, -1.5}},
		{"i8_v3.npy", dtype.Int64, []int64{1, 1}, []int64{7}},
	} {
		a, err := ReadFile(filepath.Join("testdata", test.file))
		if err != nil {
			t.Errorf("%s: unexpected error: %v", test.file, err)
			continue
		}
		if a.DType != test.elem || !reflect.DeepEqual(a.Shape, test.shape) {
			t.Errorf("%s: got %s %v, want %s %v", test.file, a.DType, a.Shape, test.elem, test.shape)
			continue
		}
		var got any
		switch test.values.(type) {
		case []float32:
			got, err = Values[float32](a)
		case []float64:
			got, err = Values[float64](a)
		case []int64:
			got, err = Values[int64](a)
		case []int32:
			got, err = Values[int32](a)
		case []int8:
			got, err = Values[int8](a)
		case []uint8:
			got, err = Values[uint8](a)
		case []bool:
			got, err = Values[bool](a)
		case []int16:
			got, err = Values[int16](a)
		case []uint16:
			if a.DType == dtype.Float16 {
				got, err = a.Float16Bits()
			} else {
				got, err = Values[uint16](a)
			}
		case []uint32:
			got, err = Values[uint32](a)
		case []uint64:
			got, err = Values[uint64](a)
		}
		if err != nil {
			t.Errorf("%s: unexpected error from Values: %v", test.file, err)
			continue
		}
		if !reflect.DeepEqual(got, test.values) {
			t.Errorf("%s: got values %v, want %v", test.file, got, test.values)
		}
	}
}

// TestReadRejects checks the error for each kind of file that Read refuses.
// Each error must name the file and say what is wrong.
func TestReadRejects(t *testing.T) {
	// v1 builds a version 1.0 file from header text and data.
	v1 := func(text string, data ...byte) []byte {
		b := []byte(magic + "\x01\x00")
		b = binary.LittleEndian.AppendUint16(b, uint16(len(text)))
		return append(append(b, text...), data...)
	}
	f4 := func(shape string) string {
		return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }\n"
	}
	for _, test := range []struct {
		reason string
		file   string // a fixture in testdata, or
		bytes  []byte // the bytes of a file
		want   string // a part of the error
	}{
		{reason: "empty", bytes: []byte{}, want: "empty file"},
		{reason: "bad magic", bytes: []byte("PK\x03\x04 this is a zip file"), want: "bad magic"},
		{reason: "short garbage", bytes: []byte("abc"), want: "truncated: 3 bytes"},
		{reason: "magic only", bytes: []byte(magic), want: "truncated"},
		{reason: "version 4", bytes: []byte(magic + "\x04\x00\x00\x00"), want: "unsupported .npy format version 4.0"},
		{reason: "version 1.1", bytes: []byte(magic + "\x01\x01\x00\x00"), want: "version 1.1"},
		{reason: "no header length", bytes: []byte(magic + "\x01\x00\x10"), want: "truncated header length"},
		{reason: "truncated header", bytes: []byte(magic + "\x01\x00\x40\x00{'descr'"), want: "truncated header"},
		{reason: "huge header length", bytes: []byte(magic + "\x02\x00\xff\xff\xff\xff"), want: "over the limit"},
		{reason: "truncated data", bytes: v1(f4("(2, 3)"), make([]byte, 20)...), want: "truncated data: float32 (2, 3) needs 24 bytes, file has 20"},
		{reason: "trailing data", bytes: v1(f4("(1,)"), make([]byte, 8)...), want: "4 bytes after the array's data"},
		{reason: "fortran order", file: "fortran_f4.npy", want: "fortran_order is True"},
		{reason: "big-endian", file: "bigendian_f4.npy", want: `big-endian dtype ">f4" is not supported`},
		{reason: "complex", file: "c8.npy", want: `unsupported dtype "<c8"`},
		{reason: "structured", file: "structured.npy", want: "structured or non-string dtype"},
		{reason: "not a dict", bytes: v1("('<f4', False)\n"), want: "header is not a dict"},
		{reason: "missing shape", bytes: v1("{'descr': '<f4', 'fortran_order': False}\n"), want: `lacks key "shape"`},
		{reason: "extra key", bytes: v1("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}\n"), want: `unexpected key "x"`},
		{reason: "repeated key", bytes: v1("{'descr': '<f4', 'descr': '<f4'}\n"), want: `repeats key "descr"`},
		{reason: "negative dim", bytes: v1(f4("(-1, 2)")), want: "dimension 0 is -1"},
		{reason: "shape is a list", bytes: v1(f4("[2, 3]")), want: "want a tuple"},
		{reason: "overflowing shape", bytes: v1(f4("(4294967296, 4294967296)")), want: "too large"},
		{reason: "integer out of range", bytes: v1(f4("(99999999999999999999,)")), want: "out of range"},
		{reason: "fortran_order not bool", bytes: v1("{'descr': '<f4', 'fortran_order': 0, 'shape': ()}\n"), want: "fortran_order is 0"},
		{reason: "junk after dict", bytes: v1(f4("()") + "x"), want: "after its dict"},
		{reason: "unterminated string", bytes: v1("{'descr: 1}"), want: "unterminated string"},
		{reason: "deep nesting", bytes: v1("{'shape': " + strings.Repeat("(", 50) + "}"), want: "nested too deeply"},
	} {
		path := filepath.Join("testdata", test.file)
		if test.file == "" {
			path = filepath.Join(t.TempDir(), "bad.npy")
			if err := os.WriteFile(path, test.bytes, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := ReadFile(path)
		if err == nil {
			t.Errorf("%s: ReadFile succeeded, want an error containing %q", test.reason, test.want)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "npy: "+path+": ") || !strings.Contains(msg, test.want) || strings.Contains(msg, "\n") {
			t.Errorf("%s: got error %q, want one line \"npy: %s: ...%s...\"", test.reason, msg, path, test.want)
		}
		if test.bytes != nil && test.reason != "trailing data" {
			// Read from a stream must refuse the same bytes.
			if _, err := Read(bytes.NewReader(test.bytes)); err == nil {
				t.Errorf("%s: Read succeeded, want an error", test.reason)
			}
		}
	}
}

func TestReadFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.npy")
	_, err := ReadFile(path)
	if want := "npy: " + path + ": no such file"; err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
}

// TestReadStream reads two arrays written one after the other to a stream.
func TestReadStream(t *testing.T) {
	a, _ := New([]int64{2}, []int64{1, 2})
	b, _ := New([]int64{1, 1}, []float32{3})
	var buf bytes.Buffer
	for _, x := range []*Array{a, b} {
		if err := Write(&buf, x); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []*Array{a, b} {
		got, err := Read(&buf)
		if err != nil {
			t.Fatalf("array %d: unexpected error: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("array %d: got %v %v, want %v %v", i, got, got.Data, want, want.Data)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("got %d bytes left, want 0", buf.Len())
	}
}

// TestParseHeaderForms checks header spellings that other writers use.
func TestParseHeaderForms(t *testing.T) {
	for _, test := range []struct {
		text  string
		elem  dtype.Type
		shape []int64
	}{
		{`{"descr": "<i8", "fortran_order": False, "shape": (3,)}`, dtype.Int64, []int64{3}},
		{"{'shape': (2L, 3L), 'fortran_order': False, 'descr': '<f4'}", dtype.Float32, []int64{2, 3}},
		{"{'descr':'|u1','fortran_order':False,'shape':()}  \n", dtype.Uint8, []int64{}},
		{"{'descr': '<u1', 'fortran_order': False, 'shape': ((4),)}", dtype.Uint8, []int64{4}},
		{"{'descr': '|b1', 'fortran_order': False, 'shape': (1, 2, 3, 4, 5, 6,), }", dtype.Bool, []int64{1, 2, 3, 4, 5, 6}},
	} {
		h, err := parseHeader(test.text)
		if err != nil {
			t.Errorf("%q: unexpected error: %v", test.text, err)
			continue
		}
		if h.elem != test.elem || !reflect.DeepEqual(h.shape, test.shape) {
			t.Errorf("%q: got %s %v, want %s %v", test.text, h.elem, h.shape, test.elem, test.shape)
		}
	}
}
