package autodiff

import (
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// unknownOpGraph is x → LpNormalization (an op autodiff has no entry
// for) → MatMul W → Add b → y, at opset 11, where reducing b's gradient
// needs the ranks that inference loses at the unknown op.
func unknownOpGraph(t *testing.T) (*testGraph, string) {
	g := newTestGraph(t, 11, dtype.Float32, declStatic)
	x := g.input("x", i64s(2, 3, 4), nil)
	h := g.node("LpNormalization", []string{x}, graph.AttrInt("axis", -1))
	w := g.param("W", i64s(4, 5), nil)
	b := g.param("b", i64s(5), nil)
	return g, g.node("Add", []string{g.node("MatMul", []string{h, w}), b})
}

// probeWith returns a ShapeProbe that runs the model on g's feeds.
func probeWith(t *testing.T, g *testGraph, calls *int) ShapeProbe {
	return func(m *graph.Model, values []string) (map[string]Probed, error) {
		*calls++
		feeds := g.tensors("", 0, 0)
		for name := range feeds {
			if m.Input(name) == nil {
				delete(feeds, name)
			}
		}
		res, err := g.session(m).Run(feeds, values)
		if err != nil {
			return nil, err
		}
		out := map[string]Probed{}
		for _, v := range values {
			out[v] = Probed{Elem: dtype.Float32, Dims: res[v].Shape()}
		}
		return out, nil
	}
}

// TestShapeProbe: past an op that autodiff does not know, the layers
// still train: with a probe run Build learns the ranks it needs and the
// gradients match finite differences; without one it fails and says why.
func TestShapeProbe(t *testing.T) {
	requireORT(t)
	g, y := unknownOpGraph(t)
	loss := g.node("ReduceSum", []string{y}, graph.AttrInt("keepdims", 0))
	if _, err := Build(g.m, loss, g.params); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("without a probe: got %v, want an error about what is unknown", err)
	}
	calls := 0
	tm, err := Build(g.m, loss, g.params, WithShapeProbe(probeWith(t, g, &calls)))
	if err != nil {
		t.Fatalf("with a probe: %v", err)
	}
	if calls != 1 {
		t.Errorf("the probe ran %d times, want 1", calls)
	}
	res, err := g.session(tm).Run(g.tensors("", 0, 0), []string{GradName("b")})
	if err != nil {
		t.Fatal(err)
	}
	// loss = Σ (h·W + b): the gradient of b is the number of rows, 6.
	for i, v := range res[GradName("b")].ToFloat64() {
		if v != 6 {
			t.Errorf("grad.b[%d] = %g, want 6", i, v)
		}
	}
}

// TestShapeProbeAgainstFiniteDifferences: the gradients of W and b past
// the unknown op, with the probe, against finite differences.
func TestShapeProbeAgainstFiniteDifferences(t *testing.T) {
	requireORT(t)
	g, y := unknownOpGraph(t)
	calls := 0
	probe := probeWith(t, g, &calls)
	loss := g.maskedLoss(y, i64s(2, 3, 5), func(int) bool { return true })
	tm, err := Build(g.m, loss, g.params, WithShapeProbe(probe))
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{loss, GradName("W"), GradName("b")}
	got, err := g.session(tm).Run(g.tensors("", 0, 0), outs)
	if err != nil {
		t.Fatal(err)
	}
	fwd := g.m.Clone()
	fwd.AddOutput(graph.TensorInfo(loss, g.dt, nil))
	s := g.session(fwd)
	at := func(p string, d float64, i int) float64 {
		r, err := s.Run(g.tensors(p, d, i), []string{loss})
		if err != nil {
			t.Fatal(err)
		}
		return r[loss].ToFloat64()[0]
	}
	for _, p := range g.params {
		grad := got[GradName(p)].ToFloat64()
		for i := range grad {
			fd := (at(p, 1e-2, i) - at(p, -1e-2, i)) / 2e-2
			if d := grad[i] - fd; d > 2e-3+2e-2*abs(fd) || -d > 2e-3+2e-2*abs(fd) {
				t.Errorf("%s[%d]: gradient %g, finite difference %g", p, i, grad[i], fd)
			}
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
