package autodiff

import (
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TestStraightThroughQDQ checks the gradient through an activation's
// QuantizeLinear → DequantizeLinear against the straight-through
// estimator's definition (finite differences of a step function say
// nothing): dL/dx = R where round(x/s) + zp lies in [0, 255], else 0, for
// L = Σ dq(q(x))·R; and that the training graph's loss, computed by the
// float fake quantization, equals the QDQ forward's.
func TestStraightThroughQDQ(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 13, dtype.Float32, declStatic)
	x := g.param("x", i64s(4, 6), uniform(-40, 40))
	const scale, zp = 0.25, 128
	s := g.floats(nil, scale)
	z := "zp"
	g.m.AddInitializer(&onnxpb.TensorProto{Name: z, DataType: int32(dtype.Uint8), RawData: []byte{zp}})
	y := g.node("DequantizeLinear", []string{g.node("QuantizeLinear", []string{x, s, z}), s, z})
	r := g.randFloats(i64s(4, 6), nil)
	loss := g.node("ReduceSum", []string{g.node("Mul", []string{y, r})}, graph.AttrInt("keepdims", 0))

	fwd := g.m.Clone()
	fwd.AddOutput(graph.TensorInfo(loss, dtype.Float32, nil))
	want, err := g.session(fwd).Run(g.tensors("", 0, 0), []string{loss})
	if err != nil {
		t.Fatal(err)
	}
	tm, err := Build(g.m, loss, g.params)
	if err != nil {
		t.Fatal(err)
	}
	got, err := g.session(tm).Run(g.tensors("", 0, 0), []string{loss, GradName(x)})
	if err != nil {
		t.Fatal(err)
	}
	if l, w := got[loss].ToFloat64()[0], want[loss].ToFloat64()[0]; math.Abs(l-w) > 1e-4*(1+math.Abs(w)) {
		t.Errorf("loss: training graph %g, QDQ forward %g", l, w)
	}
	rv := g.m.Initializer(r)
	rvals, err := g.m.Float32s(rv)
	if err != nil {
		t.Fatal(err)
	}
	grad := got[GradName(x)].ToFloat64()
	clipped := 0
	for i, xv := range g.feeds[x].f {
		w := float64(rvals[i])
		if q := math.RoundToEven(xv/scale) + zp; q < 0 || q > 255 {
			w = 0
			clipped++
		}
		if math.Abs(grad[i]-w) > 1e-6 {
			t.Errorf("dL/dx[%d] at x=%g: %g, want %g", i, xv, grad[i], w)
		}
	}
	if clipped == 0 || clipped == len(grad) {
		t.Fatalf("%d of %d values clipped: the test does not cover both sides", clipped, len(grad))
	}
}
