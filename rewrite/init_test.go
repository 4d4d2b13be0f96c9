package rewrite

import (
	"math"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
)

// TestInitA checks A's initial values: Kaiming-uniform within ±1/√in and
// spread over it, Gaussian with std 1/r, the same for the same seed and
// module, and different for another module.
func TestInitA(t *testing.T) {
	const in, r = 64, 8
	a := initA(adapter.InitKaiming, 1, "m.q_proj", in, r, r)
	bound := 1 / math.Sqrt(in)
	maxAbs := 0.0
	for _, v := range a {
		maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
	}
	if maxAbs > bound || maxAbs < 0.9*bound {
		t.Errorf("kaiming: max |A| %g, want just under %g", maxAbs, bound)
	}
	if !slices.Equal(a, initA(adapter.InitKaiming, 1, "m.q_proj", in, r, r)) {
		t.Errorf("same seed and module gave different values")
	}
	if slices.Equal(a, initA(adapter.InitKaiming, 1, "m.v_proj", in, r, r)) || slices.Equal(a, initA(adapter.InitKaiming, 2, "m.q_proj", in, r, r)) {
		t.Errorf("another module or seed gave the same values")
	}
	g := initA(adapter.InitGaussian, 1, "m.q_proj", 256, r, r)
	var ss float64
	for _, v := range g {
		ss += float64(v) * float64(v)
	}
	if std := math.Sqrt(ss / float64(len(g))); math.Abs(std-1.0/r) > 0.1/r {
		t.Errorf("gaussian: std %g want %g", std, 1.0/r)
	}
}
