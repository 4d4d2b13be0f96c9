package pickle

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/npy"
)

// FuzzRead feeds arbitrary bytes to Decode. It must return a one-line
// *Error or a value, never panic; a value it returns must encode at
// protocols 2 and 4 and decode again to the same value.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"small.p2.pkl", "small.p4.pkl"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	d := NewDict()
	d.Set("a", must(npy.New([]int64{2}, []float32{1, 2})))
	d.Set("b", NewList(int64(1), NewTuple("x", 2.5), []byte{0xff}))
	for _, p := range []int{2, 4} {
		b, err := Encode(d, p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(arr("i2", ">", []int{2, 3}, true, bytesOp(make([]byte, 12))))
	f.Add(pk("\x80\x02", opEmptyList, opBinPut, 0, opBinGet, 0, opAppend, opStop))
	f.Add(pk("\x80\x04", opFrame, u64(3), opShortBinUnicode, 3, "abc", opStop))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not a one-line *Error", err)
			}
			return
		}
		for _, p := range []int{2, 4} {
			enc, err := Encode(v, p)
			if err != nil {
				if strings.Contains(err.Error(), "does not fit protocol 2") {
					continue
				}
				t.Fatalf("decoded value does not encode at protocol %d: %v", p, err)
			}
			again, err := Decode(enc)
			if err != nil {
				t.Fatalf("protocol %d re-encoding does not decode: %v", p, err)
			}
			if !equalValues(v, again) {
				t.Fatalf("value changed on the protocol %d round trip", p)
			}
		}
	})
}
