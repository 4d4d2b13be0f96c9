package runtime_test

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// The benchmarks measure the overhead of a run on a model that does almost
// nothing: y = x + x on 16 floats.

func BenchmarkRun(b *testing.B) {
	requireORT(b)
	s := mustSession(b, addModel(b, 16), rt.WithIntraOpThreads(1))
	in := map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{1, 16}, make([]float32, 16)))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Run(in, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunDynamic(b *testing.B) {
	requireORT(b)
	s := mustSession(b, matMulAddModel(b, dtype.Float32), rt.WithIntraOpThreads(1))
	in := map[string]*rt.Tensor{
		"x": must(rt.NewFloat32([]int64{4, 3}, make([]float32, 12))),
		"w": must(rt.NewFloat32([]int64{3, 2}, make([]float32, 6))),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Run(in, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunInto(b *testing.B) {
	requireORT(b)
	s := mustSession(b, addModel(b, 16), rt.WithIntraOpThreads(1))
	in := map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{1, 16}, make([]float32, 16)))}
	out := map[string]*rt.Tensor{"y": must(rt.NewFloat32([]int64{1, 16}, make([]float32, 16)))}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.RunInto(in, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBindingRun(b *testing.B) {
	requireORT(b)
	s := mustSession(b, addModel(b, 16), rt.WithIntraOpThreads(1))
	bind, err := s.Bind(map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{1, 16}, make([]float32, 16)))}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer bind.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bind.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
