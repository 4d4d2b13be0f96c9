package main

import (
	"bytes"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
	"github.com/peftonnx/peftonnx/npy"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// TestArraysOfEveryType takes an .npy array of each type through
// tensorFromArray and back through arrayFromTensor: the tensor holds the
// values npy.Values reads, and the array written back has the bytes of
// the one read. A bfloat16 tensor is written as float32, with a note.
func TestArraysOfEveryType(t *testing.T) {
	shape := []int64{2, 3}
	arrays := []func() (*npy.Array, error){
		func() (*npy.Array, error) { return npy.New(shape, []float32{1.5, -2, 0, 3, 4, -5.25}) },
		func() (*npy.Array, error) { return npy.New(shape, []float64{1.5, -2, 0, 3, 4, -5.25}) },
		func() (*npy.Array, error) {
			return npy.NewFloat16(shape, []uint16{0x3c00, 0xc000, 0, 0x4200, 0x4400, 0x7bff})
		},
		func() (*npy.Array, error) { return npy.New(shape, []int64{1, -2, 0, 3, 1 << 40, -5}) },
		func() (*npy.Array, error) { return npy.New(shape, []int32{1, -2, 0, 3, 1 << 30, -5}) },
		func() (*npy.Array, error) { return npy.New(shape, []int16{1, -2, 0, 3, 1 << 14, -5}) },
		func() (*npy.Array, error) { return npy.New(shape, []int8{1, -2, 0, 3, 127, -128}) },
		func() (*npy.Array, error) { return npy.New(shape, []uint64{1, 2, 0, 3, 1 << 63, 5}) },
		func() (*npy.Array, error) { return npy.New(shape, []uint32{1, 2, 0, 3, 1 << 31, 5}) },
		func() (*npy.Array, error) { return npy.New(shape, []uint16{1, 2, 0, 3, 1 << 15, 5}) },
		func() (*npy.Array, error) { return npy.New(shape, []uint8{1, 2, 0, 3, 255, 5}) },
		func() (*npy.Array, error) { return npy.New(shape, []bool{true, false, false, true, true, false}) },
	}
	for i, newArray := range arrays {
		a, err := newArray()
		if err != nil {
			t.Fatalf("test %d: %v", i, err)
		}
		x, err := tensorFromArray(a)
		if err != nil {
			t.Fatalf("%s: tensorFromArray: %v", a, err)
		}
		if x.DType() != a.DType || !slices.Equal(x.Shape(), shape) {
			t.Errorf("%s: got a %s tensor", a, x)
		}
		if got, want := x.ToFloat64(), valuesOf(t, a); !slices.Equal(got, want) {
			t.Errorf("%s: tensor holds %v, want %v", a, got, want)
		}
		back, note, err := arrayFromTensor(x)
		if err != nil || note != "" {
			t.Fatalf("%s: arrayFromTensor: %v, note %q", a, err, note)
		}
		if back.DType != a.DType || !slices.Equal(back.Shape, a.Shape) || !bytes.Equal(back.Data, a.Data) {
			t.Errorf("%s: written back as %s % x, want % x", a, back, back.Data, a.Data)
		}
	}

	bf, err := ortrt.NewBFloat16([]int64{2}, []uint16{0x3fc0, 0xc020}) // 1.5, -2.5
	if err != nil {
		t.Fatal(err)
	}
	a, note, err := arrayFromTensor(bf)
	if err != nil || note == "" {
		t.Fatalf("bfloat16: %v, note %q; want a note", err, note)
	}
	if got, err := npy.Values[float32](a); err != nil || len(got) != 2 || got[0] != 1.5 || got[1] != -2.5 {
		t.Errorf("bfloat16 written as %v (%v), want float32 [1.5 -2.5]", got, err)
	}

	bad := &npy.Array{DType: dtype.Float32, Shape: shape, Data: make([]byte, 5)}
	if _, err := tensorFromArray(bad); err == nil {
		t.Error("tensorFromArray of an array with 5 bytes for 6 float32s: no error")
	}
}

// valuesOf reads a's elements as float64 through npy's typed readers.
func valuesOf(t *testing.T, a *npy.Array) []float64 {
	t.Helper()
	var out []float64
	add := func(n int, at func(int) float64) {
		for i := range n {
			out = append(out, at(i))
		}
	}
	var err error
	switch a.DType {
	case dtype.Float32:
		var v []float32
		v, err = npy.Values[float32](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Float64:
		var v []float64
		v, err = npy.Values[float64](a)
		add(len(v), func(i int) float64 { return v[i] })
	case dtype.Float16:
		var v []uint16
		v, err = a.Float16Bits()
		add(len(v), func(i int) float64 { return float64(half.Float16ToFloat32(v[i])) })
	case dtype.Int64:
		var v []int64
		v, err = npy.Values[int64](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Int32:
		var v []int32
		v, err = npy.Values[int32](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Int16:
		var v []int16
		v, err = npy.Values[int16](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Int8:
		var v []int8
		v, err = npy.Values[int8](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Uint64:
		var v []uint64
		v, err = npy.Values[uint64](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Uint32:
		var v []uint32
		v, err = npy.Values[uint32](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Uint16:
		var v []uint16
		v, err = npy.Values[uint16](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Uint8:
		var v []uint8
		v, err = npy.Values[uint8](a)
		add(len(v), func(i int) float64 { return float64(v[i]) })
	case dtype.Bool:
		var v []bool
		v, err = npy.Values[bool](a)
		add(len(v), func(i int) float64 {
			if v[i] {
				return 1
			}
			return 0
		})
	}
	if err != nil || out == nil {
		t.Fatalf("%s: reading the values: %v", a, err)
	}
	return out
}
