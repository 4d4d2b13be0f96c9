package npy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// TestWriteMatchesNumpy writes each fixture's array again and wants the
// bytes that numpy.save wrote. Files in format 2.0 and 3.0 come back as 1.0,
// which is what numpy.save writes for them.
func TestWriteMatchesNumpy(t *testing.T) {
	for _, file := range []string{"f4_2x3.npy", "f2_3.npy", "f8_scalar.npy", "i8_1x8.npy", "i4_2x2.npy", "i1_4.npy", "u1_4.npy", "i2_2.npy", "u2_2.npy", "u4_2.npy", "u8_2.npy", "b1_3.npy", "f4_0x3.npy"} {
		want, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		a, err := Read(bytes.NewReader(want))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got bytes.Buffer
		if err := Write(&got, a); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: unexpected bytes:\ngot  %q\nwant %q", file, got.Bytes(), want)
		}
	}
}

// TestEncodeHeader checks header bytes against golden values, including
// the switch to format 2.0.
func TestEncodeHeader(t *testing.T) {
	// numpy.save pads these headers with spaces to 128 bytes in all.
	fill := func(prefix, text string) string {
		return prefix + text + strings.Repeat(" ", 127-len(prefix)-len(text)) + "\n"
	}
	for _, test := range []struct {
		elem     dtype.Type
		shape    []int64
		minMajor byte
		want     string
	}{
		{dtype.Float32, []int64{2, 3}, 1, fill(magic+"\x01\x00\x76\x00", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }")},
		{dtype.Int64, []int64{1, 8}, 1, fill(magic+"\x01\x00\x76\x00", "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 8), }")},
		{dtype.Float64, []int64{}, 1, fill(magic+"\x01\x00\x76\x00", "{'descr': '<f8', 'fortran_order': False, 'shape': (), }")},
		{dtype.Bool, []int64{7}, 1, fill(magic+"\x01\x00\x76\x00", "{'descr': '|b1', 'fortran_order': False, 'shape': (7,), }")},
		{dtype.Float32, []int64{2}, 2, fill(magic+"\x02\x00\x74\x00\x00\x00", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }")},
	} {
		got := string(encodeHeader(test.elem, test.shape, test.minMajor))
		if got != test.want {
			t.Errorf("%s %v: got\n%q\nwant\n%q", test.elem, test.shape, got, test.want)
		}
		if len(got)%headerAlign != 0 {
			t.Errorf("%s %v: header is %d bytes, want a multiple of %d", test.elem, test.shape, len(got), headerAlign)
		}
	}

	// A header over 65535 bytes needs format 2.0.
	shape := make([]int64, 5000)
	for i := range shape {
		shape[i] = 1234567890123
	}
	b := encodeHeader(dtype.Uint8, shape, 1)
	if b[6] != 2 {
		t.Errorf("got format %d.%d for a %d byte header, want 2.0", b[6], b[7], len(b))
	}
	h, err := parseHeader(string(b[12:]))
	if err != nil || !reflect.DeepEqual(h.shape, shape) {
		t.Errorf("format 2.0 header does not read back: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	arrays := []*Array{
		must(New([]int64{2, 2}, []float32{1, -2, 3.5, 0})),
		must(New([]int64{3}, []float64{1e300, -0, 2})),
		must(New([]int64{1, 4}, []int64{-1 << 63, 0, 1, 1<<63 - 1})),
		must(New([]int64{}, []int32{-7})),
		must(New([]int64{2}, []int8{-1, 1})),
		must(New([]int64{2, 0, 3}, []uint8{})),
		must(New([]int64{2}, []bool{false, true})),
		must(New([]int64{1, 2}, []int16{-2, 3})),
		must(New([]int64{2}, []uint16{65535, 1})),
		must(New([]int64{2}, []uint32{1 << 31, 1})),
		must(New([]int64{2}, []uint64{1 << 63, 1})),
		must(NewFloat16([]int64{2}, []uint16{0x3c00, 0x7c00})),
	}
	dir := t.TempDir()
	for i, a := range arrays {
		path := filepath.Join(dir, "a.npy")
		if err := WriteFile(path, a); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		got, err := ReadFile(path)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Errorf("%d: got %v %v, want %v %v", i, got, got.Data, a, a.Data)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("got %d files in the folder, want 1 (no temporary files left)", len(entries))
	}
}

func TestWriteFileInvalid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.npy")
	for _, a := range []*Array{
		{DType: dtype.Float32, Shape: []int64{2}, Data: make([]byte, 7)},
		{DType: 0, Shape: []int64{}, Data: nil},
		{DType: dtype.Int64, Shape: []int64{-1}},
	} {
		if err := WriteFile(path, a); err == nil || !strings.HasPrefix(err.Error(), "npy: "+path+": ") {
			t.Errorf("%v: got error %v, want one that names %s", a, err, path)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("got %d files after failed writes, want none", len(entries))
	}
	if err := WriteFile(filepath.Join(dir, "no", "such", "dir.npy"), must(New([]int64{1}, []int8{1}))); err == nil {
		t.Errorf("writing into a missing folder succeeded")
	}
}

func TestValuesWrongType(t *testing.T) {
	a := must(New([]int64{1}, []int64{1}))
	if _, err := Values[float32](a); err == nil || err.Error() != "npy: array is int64, not float32" {
		t.Errorf("got error %v, want npy: array is int64, not float32", err)
	}
	if _, err := a.Float16Bits(); err == nil {
		t.Errorf("Float16Bits of an int64 array succeeded")
	}
	if _, err := New([]int64{2, 2}, []float32{1}); err == nil {
		t.Errorf("New with 1 value for shape (2, 2) succeeded")
	}
}

func must(a *Array, err error) *Array {
	if err != nil {
		panic(err)
	}
	return a
}
