package npy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzRead feeds Read arbitrary bytes. It must not panic, and an array it
// accepts must be valid and survive Write and Read unchanged. The seed
// corpus is the numpy fixtures and a few damaged headers, so that plain
// go test runs it.
func FuzzRead(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.npy"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(magic + "\x01\x00\x20\x00{'descr':'<f4','shape':(1,)}"))
	f.Add([]byte(magic + "\x01\x00\x30\x00{'descr': '<i8', 'fortran_order': False, 'shape': (9223372036854775807, 2), }"))
	f.Add([]byte(magic + "\x03\x00\x10\x00\x00\x00" + strings.Repeat("(", 16)))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Read(bytes.NewReader(b))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "npy: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("Read returned an invalid array: %v", err)
		}
		var buf bytes.Buffer
		if err := Write(&buf, a); err != nil {
			t.Fatalf("Write of a read array failed: %v", err)
		}
		back, err := Read(&buf)
		if err != nil {
			t.Fatalf("Read of a written array failed: %v", err)
		}
		if back.DType != a.DType || !reflect.DeepEqual(back.Shape, a.Shape) || !bytes.Equal(back.Data, a.Data) {
			t.Fatalf("round trip changed %v into %v", a, back)
		}
	})
}
