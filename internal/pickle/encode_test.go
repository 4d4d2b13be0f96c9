package pickle

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/npy"
)

// TestEncodeRoundTrip encodes values of every kind at protocols 2 and 4
// and decodes them to the same values, here without Python (see
// TestPythonReadsOurs for Python's side).
func TestEncodeRoundTrip(t *testing.T) {
	large := make([]float32, 50000) // 200 KB: more than one frame
	for i := range large {
		large[i] = float32(i) - 0.5
	}
	arrays := []*npy.Array{
		must(npy.New([]int64{2, 2}, []float32{1, -2, 3.5, 1e-30})),
		must(npy.New([]int64{}, []float64{math.Inf(-1)})),
		must(npy.New([]int64{3}, []int64{math.MinInt64, 0, math.MaxInt64})),
		must(npy.New([]int64{2}, []bool{false, true})),
		must(npy.New([]int64{1, 0}, []uint8{})),
		must(npy.New([]int64{3}, []uint16{0, 0x3f80, 0xffff})),
		must(npy.NewFloat16([]int64{1}, []uint16{0x7c00})),
		must(npy.New([]int64{250, 200}, large)),
	}
	d := NewDict()
	for i, a := range arrays {
		d.Set(strings.Repeat("k", i+1), a)
	}
	inner := NewDict()
	inner.Set("OriginShape", NewTuple(int64(2), int64(3)))
	inner.Set("slices", NewList("x@@.0", "x@@.1"))
	d.Set("nested", inner)
	d.Set("scalars", NewList(nil, true, false, int64(-1), int64(1<<40), int64(math.MinInt64), 0.25, "", "ü", []byte{}, []byte{0x80, 0}, NewTuple(), NewTuple(1, 2, 3, 4, 5)))
	for i := range 2100 { // three SETITEMS batches, memo indices past 255
		d.Set("many."+strings.Repeat("x", i%7)+string(rune('a'+i%26))+strconv.Itoa(i), int64(i))
	}
	for _, protocol := range []int{2, 4} {
		b, err := Encode(d, protocol)
		if err != nil {
			t.Fatalf("protocol %d: %v", protocol, err)
		}
		if b[0] != opProto || int(b[1]) != protocol {
			t.Errorf("protocol %d: starts % x, want PROTO %d", protocol, b[:2], protocol)
		}
		got, err := DecodeDict(b)
		if err != nil {
			t.Fatalf("protocol %d: %v", protocol, err)
		}
		// Encode takes int, Decode gives int64: compare through a second trip.
		b2, err := Encode(got, protocol)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeDict(b2)
		if err != nil {
			t.Fatal(err)
		}
		if !equalValues(got, again) {
			t.Errorf("protocol %d: a second trip changed the dict", protocol)
		}
		for i, a := range arrays {
			v, _ := got.Get(strings.Repeat("k", i+1))
			if !equalValues(v, a) {
				t.Errorf("protocol %d: array %d came back as %s, want %s", protocol, i, TypeName(v), a)
			}
		}
		n, _ := got.Get("nested")
		if !equalValues(n, inner) {
			t.Errorf("protocol %d: nested came back as %v", protocol, n)
		}
		if got.Len() != d.Len() {
			t.Errorf("protocol %d: %d keys, want %d", protocol, got.Len(), d.Len())
		}
	}
}

func must(a *npy.Array, err error) *npy.Array {
	if err != nil {
		panic(err)
	}
	return a
}

// TestEncodeRefuses checks what Encode cannot write.
func TestEncodeRefuses(t *testing.T) {
	self := NewDict()
	self.Set("me", self)
	cases := []struct {
		name     string
		v        any
		protocol int
		want     string
	}{
		{"protocol 3", NewDict(), 3, "protocol 3: Encode writes protocol 2 or 4"},
		{"Go struct", struct{}{}, 4, "cannot encode a value of Go type struct {}"},
		{"float32", float32(1), 4, "cannot encode a value of Go type float32"},
		{"invalid UTF-8", "\xff", 2, "not valid UTF-8"},
		{"dict inside itself", self, 4, "nested more than 64 deep"},
		{"bad array", &npy.Array{DType: dtype.Float32, Shape: []int64{2}, Data: []byte{1}}, 4, "array: npy: float32 (2,) array needs 8 bytes of data, has 1"},
	}
	for _, c := range cases {
		_, err := Encode(c.v, c.protocol)
		if err == nil || !strings.HasPrefix(err.Error(), "pickle: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want a pickle: error containing %q", c.name, err, c.want)
		}
	}
}
