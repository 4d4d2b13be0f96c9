package runtime_test

import (
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// lossModel computes y = MatMul(x, w) and loss = ReduceSum(y), a scalar,
// the shape of a training step's outputs. With dynamic, x has a dynamic
// batch and so has y.
func lossModel(t testing.TB, dynamic bool) []byte {
	var batch dim = 2
	if dynamic {
		batch = "batch"
	}
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{
			tensorInfo("x", dtype.Float32, batch, 3),
			tensorInfo("w", dtype.Float32, 3, 2),
		},
		Output: []*onnxpb.ValueInfoProto{
			tensorInfo("loss", dtype.Float32),
			tensorInfo("y", dtype.Float32, batch, 2),
		},
		Node: []*onnxpb.NodeProto{
			node("MatMul", []string{"x", "w"}, []string{"y"}),
			node("ReduceSum", []string{"y"}, []string{"loss"}, intAttr("keepdims", 0)),
		},
	}
	return marshalModel(t, g, 8, 17)
}

func sum32(v []float32) float32 {
	var s float32
	for _, x := range v {
		s += x
	}
	return s
}

func TestBindingReusesTensors(t *testing.T) {
	requireORT(t)
	for _, dynamic := range []bool{false, true} {
		s := mustSession(t, lossModel(t, dynamic))
		x := must(rt.NewFloat32([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6}))
		w := must(rt.NewFloat32([]int64{3, 2}, make([]float32, 6)))
		b, err := s.Bind(map[string]*rt.Tensor{"x": x, "w": w}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var first map[string]*rt.Tensor
		for step := range 5 {
			// An optimizer updates the parameters in place.
			for i := range w.Float32() {
				w.Float32()[i] = float32(step*i) * 0.5
			}
			out, err := b.Run()
			if err != nil {
				t.Fatal(err)
			}
			if step == 0 {
				first = out
			}
			if out["loss"] != first["loss"] || out["y"] != first["y"] {
				t.Errorf("dynamic=%v step %d: outputs were reallocated", dynamic, step)
			}
			want := matMul([]float64{1, 2, 3, 4, 5, 6}, toF64(w.Float32()), 2, 3, 2)
			if got := out["y"].Float32(); !slices.Equal(toF64(got), want) {
				t.Errorf("dynamic=%v step %d: y = %v, want %v", dynamic, step, got, want)
			}
			if got, want := out["loss"].Float32()[0], sum32(out["y"].Float32()); got != want {
				t.Errorf("dynamic=%v step %d: loss = %v, want %v", dynamic, step, got, want)
			}
			if b.Output("loss") != out["loss"] {
				t.Errorf("dynamic=%v: Output(loss) is not the tensor Run returned", dynamic)
			}
		}
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := b.Run(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 2 {
			t.Errorf("dynamic=%v: Binding.Run allocates %v times per step, want at most 2", dynamic, allocs)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}

func toF64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func TestBindingSetInput(t *testing.T) {
	requireORT(t)
	s := mustSession(t, lossModel(t, true))
	w := must(rt.NewFloat32([]int64{3, 2}, []float32{1, 0, 0, 1, 1, 1}))
	b, err := s.Bind(map[string]*rt.Tensor{
		"x": must(rt.NewFloat32([]int64{1, 3}, []float32{1, 2, 3})),
		"w": w,
	}, []string{"y", "loss"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Output("y") != nil {
		t.Error("Output(y) before the first Run of a dynamic output: got a tensor, want nil")
	}
	out, err := b.Run()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out["y"].Float32(), []float32{4, 5}; !slices.Equal(got, want) {
		t.Errorf("batch 1: y = %v, want %v", got, want)
	}
	// A batch of another size: outputs get new shapes.
	if err := b.SetInput("x", must(rt.NewFloat32([]int64{3, 3}, []float32{1, 0, 0, 0, 1, 0, 0, 0, 1}))); err != nil {
		t.Fatal(err)
	}
	out, err = b.Run()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out["y"].Shape(), []int64{3, 2}; !slices.Equal(got, want) {
		t.Errorf("batch 3: y shape %v, want %v", got, want)
	}
	if got, want := out["loss"].Float32()[0], float32(4); got != want {
		t.Errorf("batch 3: loss = %v, want %v", got, want)
	}
	if err := b.SetInput("x", must(rt.NewInt64([]int64{3, 3}, make([]int64, 9)))); err == nil {
		t.Error("SetInput with an int64 tensor: got no error")
	}
	if err := b.SetInput("w", nil); err == nil {
		t.Error("SetInput removing a required input: got no error")
	}
	if err := b.SetInput("nope", w); err == nil {
		t.Error("SetInput of an unknown input: got no error")
	}
}

func TestBindingOptionalInput(t *testing.T) {
	requireORT(t)
	for _, static := range []bool{true, false} {
		s := mustSession(t, optionalInputModel(t, 8, static))
		b, err := s.Bind(map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{2, 2}, []float32{1, 2, 3, 4}))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, tc := range []struct {
			w    *rt.Tensor
			want []float32
		}{
			{nil, []float32{1, 2, 3, 4}},
			{must(rt.NewFloat32([]int64{2, 2}, []float32{2, 0, 0, 3})), []float32{2, 6, 6, 12}},
			{nil, []float32{1, 2, 3, 4}},
		} {
			if err := b.SetInput("w", tc.w); err != nil {
				t.Fatal(err)
			}
			out, err := b.Run()
			if err != nil {
				t.Fatal(err)
			}
			if got := out["y"].Float32(); !slices.Equal(got, tc.want) {
				t.Errorf("static=%v, test %d: y = %v, want %v", static, i, got, tc.want)
			}
		}
		b.Close()
	}
}

// TestBindingScalarInput checks that a scalar input is read anew on each
// Run, as tensors are.
func TestBindingScalarInput(t *testing.T) {
	requireORT(t)
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{
			tensorInfo("x", dtype.Float32, 2),
			tensorInfo("scale", dtype.Float32),
		},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, 2)},
		Node:   []*onnxpb.NodeProto{node("Mul", []string{"x", "scale"}, []string{"y"})},
	}
	s := mustSession(t, marshalModel(t, g, 8, 17))
	scale := must(rt.NewFloat32(nil, []float32{2}))
	b, err := s.Bind(map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{2}, []float32{1, 2})), "scale": scale}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, k := range []float32{2, 3, -1} {
		scale.Float32()[0] = k
		out, err := b.Run()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := out["y"].Float32(), []float32{k, 2 * k}; !slices.Equal(got, want) {
			t.Errorf("scale %v: y = %v, want %v", k, got, want)
		}
	}
}
