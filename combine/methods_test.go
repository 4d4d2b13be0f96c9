package combine_test

import (
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
)

// handFixture is the module every hand-worked case combines: two rank-1
// adapters of one module [in 3, out 2],
//
//	a1: r 1, alpha 1 (s 1): A = [1, -2, 3]ᵀ,   B = [4, -1]
//	a2: r 1, alpha 4 (s 4): A = [2, 1, -0.5]ᵀ, B = [-2, 3]
//
// With weights w, c_i = w_i·s_i, and PEFT weighs the A's by
// sgn(c_i)·√|c_i| and the B's by √|c_i|: for w = (1, 1) that is (1, 2)
// for both; for w = (1, -1), (1, -2) for A and (1, 2) for B.
func handFixture() []combine.Input {
	a1 := lora(1, 1, false, map[string]adapter.LoRAWeights{"m": {A: tensor(3, 1, 1, -2, 3), B: tensor(1, 2, 4, -1)}})
	a2 := lora(1, 4, false, map[string]adapter.LoRAWeights{"m": {A: tensor(3, 1, 2, 1, -0.5), B: tensor(1, 2, -2, 3)}})
	return inputs(a1, a2)
}

// TestHandWorked checks each method against the factors worked out by
// hand from PEFT's definitions (add_weighted_adapter, merge_utils).
func TestHandWorked(t *testing.T) {
	for _, test := range []struct {
		reason string
		o      combine.Options
		a, b   *adapter.Tensor
	}{
		{
			// A = 1·A1 + 2·A2, B = 1·B1 + 2·B2.
			reason: "linear",
			o:      combine.Options{Method: combine.Linear},
			a:      tensor(3, 1, 5, 0, 2), b: tensor(1, 2, 0, 5),
		},
		{
			// The sign goes on A only: A = A1 - 2·A2, B = B1 + 2·B2.
			reason: "linear, negative weight",
			o:      combine.Options{Method: combine.Linear, Weights: []float64{1, -1}},
			a:      tensor(3, 1, -3, -4, 4), b: tensor(1, 2, 0, 5),
		},
		{
			// A = [w1·s1·A1 | w2·s2·A2], B = [B1; B2].
			reason: "cat",
			o:      combine.Options{Method: combine.Cat},
			a:      tensor(3, 2, 1, 8, -2, 4, 3, -2), b: tensor(2, 2, 4, -1, -2, 3),
		},
		{
			// int(0.5·3) = 1 value of each A kept: A1 → [0,0,3], A2 → [2,0,0];
			// int(0.5·2) = 1 of each B: B1 → [4,0], B2 → [0,3].
			reason: "magnitude_prune 0.5",
			o:      combine.Options{Method: combine.MagnitudePrune, Density: 0.5},
			a:      tensor(3, 1, 4, 0, 3), b: tensor(1, 2, 4, 6),
		},
		{
			// int(0.7·3) = 2: A1 → [0,-2,3], A2 → [2,1,0]; int(0.7·2) = 1 as above.
			reason: "magnitude_prune 0.7",
			o:      combine.Options{Method: combine.MagnitudePrune, Density: 0.7},
			a:      tensor(3, 1, 4, 0, 3), b: tensor(1, 2, 4, 6),
		},
		{
			// Nothing pruned. A: sums of the unweighted values [3, -1, 2.5]
			// elect [+, -, +]; A1 agrees everywhere, A2 at element 0 only:
			// [(1+4)/2, -2/1, 3/1]. B: sums [2, 2] elect [+, +]; B1 agrees at
			// 0, B2 at 1: [4/1, 6/1].
			reason: "ties 1 total",
			o:      combine.Options{Method: combine.TIES, Density: 1},
			a:      tensor(3, 1, 2.5, -2, 3), b: tensor(1, 2, 4, 6),
		},
		{
			// Sums of signs: A [2, 0, 0] elect [+, +, +] (zero elects +):
			// element 1 takes A2's 2·1 instead of A1's -2.
			reason: "ties 1 frequency",
			o:      combine.Options{Method: combine.TIES, Density: 1, MajoritySign: combine.SignFrequency},
			a:      tensor(3, 1, 2.5, 2, 3), b: tensor(1, 2, 4, 6),
		},
		{
			// Pruned A1 [0,-2,3], A2 [2,1,0]: sums [2,-1,3] elect [+,-,+];
			// zeros never agree: [2·2/1, -2/1, 3/1]. B as magnitude_prune.
			reason: "ties 0.7 total",
			o:      combine.Options{Method: combine.TIES, Density: 0.7},
			a:      tensor(3, 1, 4, -2, 3), b: tensor(1, 2, 4, 6),
		},
		{
			// The election is on the unweighted values, as for w = (1, 1);
			// then A2 counts -2 times: [(1-4)/2, -2/1, 3/1].
			reason: "ties 1 total, negative weight",
			o:      combine.Options{Method: combine.TIES, Density: 1, Weights: []float64{1, -1}},
			a:      tensor(3, 1, -1.5, -2, 3), b: tensor(1, 2, 4, 6),
		},
		{
			// Density 1 keeps every value and rescales nothing: linear.
			reason: "dare_linear 1",
			o:      combine.Options{Method: combine.DARELinear, Density: 1, Seed: 7},
			a:      tensor(3, 1, 5, 0, 2), b: tensor(1, 2, 0, 5),
		},
		{
			reason: "dare_ties 1",
			o:      combine.Options{Method: combine.DARETIES, Density: 1, Seed: 7},
			a:      tensor(3, 1, 2.5, -2, 3), b: tensor(1, 2, 4, 6),
		},
	} {
		got := mustCombine(t, handFixture(), test.o)
		w := got.Weights["m"]
		if !slices.Equal(w.A.Shape, test.a.Shape) || !slices.Equal(w.A.Data, test.a.Data) {
			t.Errorf("%s: got A %v %v, want %v %v", test.reason, w.A.Shape, w.A.Data, test.a.Shape, test.a.Data)
		}
		if !slices.Equal(w.B.Shape, test.b.Shape) || !slices.Equal(w.B.Data, test.b.Data) {
			t.Errorf("%s: got B %v %v, want %v %v", test.reason, w.B.Shape, w.B.Data, test.b.Shape, test.b.Data)
		}
		if s := got.LoRA.ScalingFor("m"); s != 1 {
			t.Errorf("%s: got scaling %v, want 1", test.reason, s)
		}
	}
}

// TestLinearIsNotTheSumOfDeltas checks what PEFT's linear computes:
// (Σ sgn(c_i)√|c_i|·A_i)·(Σ √|c_i|·B_i), cross terms included, which here
// differs from Σ c_i·A_i·B_i, while cat gives that sum exactly.
func TestLinearIsNotTheSumOfDeltas(t *testing.T) {
	in := handFixture()
	sum := delta(in[0].Adapter, "m").add(delta(in[1].Adapter, "m"))
	// By hand: A1·B1 + 4·A2·B2.
	want := dense{{-12, 23}, {-16, 14}, {16, -9}}
	if d := maxDiff(sum, want); d != 0 {
		t.Fatalf("fixture: Σ c_i·A_i·B_i is %v, want %v", sum, want)
	}
	lin := mustCombine(t, in, combine.Options{Method: combine.Linear})
	// [5, 0, 2]ᵀ·[0, 5].
	if got, want := delta(lin, "m"), (dense{{0, 25}, {0, 0}, {0, 10}}); maxDiff(got, want) != 0 {
		t.Errorf("linear: got delta %v, want %v", got, want)
	}
	if got := delta(lin, "m"); maxDiff(got, sum) == 0 {
		t.Errorf("linear: got the sum of the deltas %v; PEFT's linear has cross terms", got)
	}
	cat := mustCombine(t, in, combine.Options{Method: combine.Cat})
	if got := delta(cat, "m"); maxDiff(got, sum) != 0 {
		t.Errorf("cat: got delta %v, want %v", got, sum)
	}
}
