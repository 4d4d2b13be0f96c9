package combine

import (
	"slices"
	"testing"
)

// scriptedMask keeps values as its script says, in the order they are
// drawn, so that DARE's results can be worked out by hand.
type scriptedMask struct {
	script []bool
	drawn  int
}

func (s *scriptedMask) keep(float64) bool {
	k := s.script[s.drawn]
	s.drawn++
	return k
}

// TestDAREByHand checks dare_linear and dare_ties on the hand fixture of
// methods_test.go (A1 = [1,-2,3]ᵀ, B1 = [4,-1] with c 1; A2 = [2,1,-0.5]ᵀ,
// B2 = [-2,3] with c 4, so the weights are (1, 2) for A and B) with
// density 0.5 and the masks A1 [1,0,1], A2 [1,1,0], B1 [0,1], B2 [1,1],
// drawn in that order. Kept values are doubled (divided by the density):
// A1 → [2,0,6], A2 → [4,2,0], B1 → [0,-2], B2 → [-4,6].
func TestDAREByHand(t *testing.T) {
	script := []bool{true, false, true, true, true, false, false, true, true, true}
	parts := []part{
		{input: 0, a: matrix{3, 1, []float64{1, -2, 3}}, b: matrix{1, 2, []float64{4, -1}}, coef: 1},
		{input: 1, a: matrix{3, 1, []float64{2, 1, -0.5}}, b: matrix{1, 2, []float64{-2, 3}}, coef: 4},
	}
	for _, test := range []struct {
		method Method
		a, b   []float64
	}{
		// A = [2,0,6] + 2·[4,2,0]; B = [0,-2] + 2·[-4,6].
		{DARELinear, []float64{10, 4, 6}, []float64{-8, 10}},
		// A: sums [6,2,6] elect +: [(2+8)/2, 4/1, 6/1]. B: sums [-4,4]
		// elect [-,+]; only B2 agrees: [-8/1, 12/1].
		{DARETIES, []float64{5, 4, 6}, []float64{-8, 12}},
	} {
		c := &combiner{inputs: make([]Input, 2), o: &Options{Method: test.method, Density: 0.5}}
		mask := &scriptedMask{script: script}
		a, b, err := c.factorModule(test.method, "m", parts, mask)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.data, test.a) || !slices.Equal(b.data, test.b) {
			t.Errorf("%s: got A %v, B %v; want %v, %v", test.method, a.data, b.data, test.a, test.b)
		}
		if mask.drawn != len(script) {
			t.Errorf("%s: drew %d mask values, want %d", test.method, mask.drawn, len(script))
		}
	}
}

// TestPCGMaskKeepsDensity checks that the masks keep about the density's
// fraction of values (combine_test.go checks them against the recipe the
// package documents).
func TestPCGMaskKeepsDensity(t *testing.T) {
	const n = 20000
	for _, test := range []struct {
		seed    uint64
		module  string
		density float64
	}{
		{0, "model.layers.0.self_attn.q_proj", 0.5},
		{42, "h.0.attn.c_attn", 0.1},
		{42, "h.1.attn.c_attn", 0.9},
	} {
		m := newPCGMask(test.seed, test.module)
		kept := 0
		for range n {
			if m.keep(test.density) {
				kept++
			}
		}
		if got := float64(kept) / n; got < test.density-0.02 || got > test.density+0.02 {
			t.Errorf("seed %d, %s: kept %.3f of the values, want about %v", test.seed, test.module, got, test.density)
		}
	}
}
