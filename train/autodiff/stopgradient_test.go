package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// loss = sum(x ⊙ x + stop(x ⊙ x)): with the product detached on one path,
// the gradient is 2x, not 4x.
func TestStopGradient(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 17, dtype.Float32, declStatic)
	m := g.m
	m.AddInput(graph.TensorInfo("x", dtype.Float32, []int64{3}))
	m.AddInitializer(graph.NewFloat32Tensor("x", dtype.Float32, []int64{3}, []float32{1, -2, 3}))
	m.NewNode("Mul", "sq", []string{"x", "x"}, []string{"sq"})
	m.NewNode("Identity", "detach", []string{"sq"}, []string{"detached"})
	m.NewNode("Add", "add", []string{"sq", "detached"}, []string{"both"})
	m.NewNode("ReduceSum", "sum", []string{"both"}, []string{"loss"}, graph.AttrInt("keepdims", 0))
	m.AddOutput(graph.TensorInfo("loss", dtype.Float32, nil))
	x, err := rt.NewFloat32([]int64{3}, []float32{1, -2, 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stop bool
		want []float32
	}{{false, []float32{4, -8, 12}}, {true, []float32{2, -4, 6}}} {
		c := m.Clone()
		if tc.stop {
			MarkStopGradient(c, "detached")
		}
		gm, err := Build(c, "loss", []string{"x"})
		if err != nil {
			t.Fatal(err)
		}
		s := g.session(gm)
		res, err := s.Run(map[string]*rt.Tensor{"x": x}, []string{GradName("x")})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := res[GradName("x")].Float32()
		for i := range tc.want {
			if got[i] != tc.want[i] {
				t.Errorf("stop %v: gradient %v, want %v", tc.stop, got, tc.want)
				break
			}
		}
	}
	c := m.Clone()
	MarkStopGradient(c, "detached", "sq")
	MarkStopGradient(c, "detached")
	if got := stopGradients(c); len(got) != 2 || !got["detached"] || !got["sq"] {
		t.Errorf("the entry lists %v, want detached and sq once each", got)
	}
}
