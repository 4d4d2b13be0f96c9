package combine_test

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
	"github.com/peftonnx/peftonnx/dtype"
)

// randomInputs returns three adapters of one base with different ranks,
// alphas, rsLoRA and rank patterns, and modules that not all of them
// have: q [8→6] in all, v [8→4] in a1 and a3, o [6→8] in a2 only.
func randomInputs(seed uint64) []combine.Input {
	rng := rand.New(rand.NewPCG(seed, 99))
	a1 := lora(2, 4, false, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 8, 2, 6), "l.v": randomFactors(rng, 8, 3, 4)})
	a1.LoRA.RankPattern = map[string]int{"v": 3}
	a2 := lora(4, 8, true, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 8, 4, 6), "l.o": randomFactors(rng, 6, 4, 8)})
	a3 := lora(3, 5, false, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 8, 3, 6), "l.v": randomFactors(rng, 8, 3, 4)})
	a3.LoRA.AlphaPattern = map[string]float64{"q": 12}
	return inputs(a1, a2, a3)
}

// weightedSum returns Σ w_i·s_i·A_i·B_i of module over the inputs that
// have it.
func weightedSum(in []combine.Input, weights []float64, module string) dense {
	var sum dense
	for i, x := range in {
		if _, ok := x.Adapter.Weights[module]; !ok {
			continue
		}
		d := delta(x.Adapter, module).scale(weights[i])
		if sum == nil {
			sum = d
		} else {
			sum = sum.add(d)
		}
	}
	return sum
}

// TestCatIsTheWeightedSum checks that cat's delta is Σ w_i·s_i·A_i·B_i
// (float32 rounding of the factors aside), with each input's own scaling:
// alpha/r, alpha/√r with rsLoRA, and the patterns.
func TestCatIsTheWeightedSum(t *testing.T) {
	in := randomInputs(1)
	if s := in[1].Adapter.LoRA.ScalingFor("l.q"); s != 4 { // 8/√4
		t.Fatalf("fixture: a2's rsLoRA scaling is %v, want 4", s)
	}
	if s := in[2].Adapter.LoRA.ScalingFor("l.q"); s != 4 { // alpha_pattern 12 / 3
		t.Fatalf("fixture: a3's q scaling is %v, want 4", s)
	}
	weights := []float64{0.7, -1.3, 2}
	got := mustCombine(t, in, combine.Options{Method: combine.Cat, Weights: weights})
	for _, test := range []struct {
		module string
		rank   int
	}{{"l.q", 2 + 4 + 3}, {"l.v", 3 + 3}, {"l.o", 4}} {
		if r := got.LoRA.RankFor(test.module); r != test.rank {
			t.Errorf("%s: got rank %d, want %d", test.module, r, test.rank)
		}
		want := weightedSum(in, weights, test.module)
		if d := maxDiff(delta(got, test.module), want); d > 1e-6*want.norm() {
			t.Errorf("%s: delta differs from Σ w·s·A·B by %g", test.module, d)
		}
	}
	if got.LoRA.UseRSLoRA {
		t.Errorf("got use_rslora true; the combined adapter has scaling 1 without it")
	}
}

// equalRankInputs returns three adapters of one base, all of rank 3 (so
// that the methods on factors take them), with different alphas, rsLoRA
// and an alpha pattern, and modules that not all of them have: q in all,
// v in a1 and a3, o in a2 only.
func equalRankInputs(seed uint64) []combine.Input {
	rng := rand.New(rand.NewPCG(seed, 98))
	a1 := lora(3, 6, false, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 8, 3, 6), "l.v": randomFactors(rng, 8, 3, 4)})
	a2 := lora(3, 4, true, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 8, 3, 6), "l.o": randomFactors(rng, 6, 3, 8)})
	a3 := lora(3, 5, false, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 8, 3, 6), "l.v": randomFactors(rng, 8, 3, 4)})
	a3.LoRA.AlphaPattern = map[string]float64{"q": 12}
	return inputs(a1, a2, a3)
}

// TestLinear checks linear against PEFT's formula: with c_i = w_i·s_i,
// (Σ sgn(c_i)·√|c_i|·A_i)·(Σ √|c_i|·B_i).
func TestLinear(t *testing.T) {
	in := equalRankInputs(2)
	weights := []float64{-0.4, 1.5, 0.8}
	got := mustCombine(t, in, combine.Options{Method: combine.Linear, Weights: weights})
	for _, m := range []string{"l.q", "l.v", "l.o"} {
		var sumA, sumB dense
		for i, x := range in {
			w, ok := x.Adapter.Weights[m]
			if !ok {
				continue
			}
			c := weights[i] * x.Adapter.LoRA.ScalingFor(m)
			root := math.Sqrt(math.Abs(c))
			a, b := denseOf(w.A).scale(math.Copysign(root, c)), denseOf(w.B).scale(root)
			if sumA == nil {
				sumA, sumB = a, b
			} else {
				sumA, sumB = sumA.add(a), sumB.add(b)
			}
		}
		want := sumA.mul(sumB)
		if d := maxDiff(delta(got, m), want); d > 1e-6*want.norm() {
			t.Errorf("%s: delta differs from PEFT's linear by %g", m, d)
		}
		sum := weightedSum(in, weights, m)
		switch d := maxDiff(want, sum); {
		case m == "l.o" && d > 1e-12: // one input: exact
			t.Errorf("%s: PEFT's linear of one input differs from w·s·A·B by %g", m, d)
		case m != "l.o" && d < 1e-3:
			t.Errorf("fixture: %s: linear equals the weighted sum (%g); it should have cross terms", m, d)
		}
	}
}

// TestSVDIsTheBestRankK checks svd against an independent computation:
// the eigen-decomposition of DᵀD for D = Σ w_i·s_i·A_i·B_i gives the best
// rank-k approximation D·V_k·V_kᵀ, and what it leaves out is the sum of
// the tail's squared singular values (Eckart–Young). A scaling applied
// twice (peft#3111) or not at all would miss both.
func TestSVDIsTheBestRankK(t *testing.T) {
	in := randomInputs(3)
	weights := []float64{1.1, 0.6, -0.8}
	for _, test := range []struct {
		rank int // Options.Rank
		want map[string]int
	}{
		{3, map[string]int{"l.q": 3, "l.v": 3, "l.o": 3}},
		{5, map[string]int{"l.q": 5, "l.v": 4, "l.o": 5}}, // v has out 4
		{0, map[string]int{"l.q": 4, "l.v": 4, "l.o": 4}}, // the largest input rank
	} {
		got := mustCombine(t, in, combine.Options{Method: combine.SVD, Weights: weights, Rank: test.rank})
		for m, k := range test.want {
			if r := got.LoRA.RankFor(m); r != k {
				t.Errorf("rank %d: %s: got rank %d, want %d", test.rank, m, r, k)
				continue
			}
			d := weightedSum(in, weights, m)
			best, tail := bestRank(d, k)
			approx := delta(got, m)
			if diff := maxDiff(approx, best); diff > 1e-5*d.norm() {
				t.Errorf("rank %d: %s: differs from the best rank-%d approximation by %g", test.rank, m, k, diff)
			}
			residual := d.add(approx.scale(-1)).norm()
			if math.Abs(residual-math.Sqrt(tail)) > 1e-5*d.norm() {
				t.Errorf("rank %d: %s: ‖D - A·B‖ = %g, want √(Σ tail σ²) = %g", test.rank, m, residual, math.Sqrt(tail))
			}
			// A's columns are orthonormal, or zero where D has no more
			// singular values.
			ata := denseOf(got.Weights[m].A).transpose()
			ata = ata.mul(ata.transpose())
			for i := range ata {
				for j := range ata[i] {
					want := 0.0
					if i == j && ata[i][i] > 0.5 {
						want = 1
					}
					if math.Abs(ata[i][j]-want) > 1e-5 {
						t.Errorf("rank %d: %s: (AᵀA)[%d,%d] = %v, want %v", test.rank, m, i, j, ata[i][j], want)
					}
				}
			}
		}
	}
}

// TestOneAdapterComesBack checks the identity that PEFT got wrong with
// rsLoRA (peft#3449): one adapter with weight 1 combines to the same
// delta by every method (PEFT uses linear for one adapter), and two with
// the second weighted 0 do too by cat and svd, which PEFT's fix did not
// reach.
func TestOneAdapterComesBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	ad := lora(4, 8, true, map[string]adapter.LoRAWeights{"m": randomFactors(rng, 5, 4, 7)})
	other := lora(4, 8, true, map[string]adapter.LoRAWeights{"m": randomFactors(rng, 5, 4, 7)})
	// s = 8/√4 = 4, written out rather than asked of the config.
	want := denseOf(ad.Weights["m"].A).mul(denseOf(ad.Weights["m"].B)).scale(4)
	for _, test := range []struct {
		reason string
		in     []combine.Input
		o      combine.Options
	}{
		{"one, linear", inputs(ad), combine.Options{Method: combine.Linear}},
		{"one, cat", inputs(ad), combine.Options{Method: combine.Cat}},
		{"one, svd", inputs(ad), combine.Options{Method: combine.SVD}},
		{"one, ties", inputs(ad), combine.Options{Method: combine.TIES, Density: 0.5}},
		{"one, dare_ties", inputs(ad), combine.Options{Method: combine.DARETIES, Density: 0.5}},
		{"two, cat", inputs(ad, other), combine.Options{Method: combine.Cat, Weights: []float64{1, 0}}},
		{"two, svd", inputs(ad, other), combine.Options{Method: combine.SVD, Weights: []float64{1, 0}}},
	} {
		got := mustCombine(t, test.in, test.o)
		if got.LoRA.UseRSLoRA || got.LoRA.ScalingFor("m") != 1 {
			t.Errorf("%s: got use_rslora %v and scaling %v, want false and 1", test.reason, got.LoRA.UseRSLoRA, got.LoRA.ScalingFor("m"))
		}
		if d := maxDiff(delta(got, "m"), want); d > 1e-6*want.norm() {
			t.Errorf("%s: delta differs from the adapter's by %g", test.reason, d)
		}
	}
	if m := combine.EffectiveMethod(combine.SVD, 1); m != combine.Linear {
		t.Errorf("EffectiveMethod(svd, 1) = %s, want linear", m)
	}
}

// TestDAREMasks checks dare_linear against the recipe the package
// documents, rebuilt here: per module a PCG seeded with (seed, FNV-1a of
// the name), A's masks of each input, then B's, kept when Float64() <
// density and divided by it. Then the same seed gives the same adapter
// and another seed another.
func TestDAREMasks(t *testing.T) {
	in := equalRankInputs(5)
	weights := []float64{0.5, 2, 1}
	const density, seed = 0.3, 11
	got := mustCombine(t, in, combine.Options{Method: combine.DARELinear, Weights: weights, Density: density, Seed: seed})
	for _, m := range []string{"l.q", "l.v", "l.o"} {
		h := fnv.New64a()
		h.Write([]byte(m))
		rng := rand.New(rand.NewPCG(seed, h.Sum64()))
		pruned := func(t *adapter.Tensor, w float64) []float64 {
			out := make([]float64, len(t.Data))
			for i, v := range t.Data {
				if rng.Float64() < density {
					out[i] = w * float64(v) / density
				}
			}
			return out
		}
		var has []int // the inputs that have m
		for i, x := range in {
			if _, ok := x.Adapter.Weights[m]; ok {
				has = append(has, i)
			}
		}
		root := func(i int) float64 { return math.Sqrt(weights[i] * in[i].Adapter.LoRA.ScalingFor(m)) }
		wantA := make([]float64, len(in[has[0]].Adapter.Weights[m].A.Data))
		wantB := make([]float64, len(in[has[0]].Adapter.Weights[m].B.Data))
		for _, i := range has {
			for j, v := range pruned(in[i].Adapter.Weights[m].A, root(i)) {
				wantA[j] += v
			}
		}
		for _, i := range has {
			for j, v := range pruned(in[i].Adapter.Weights[m].B, root(i)) {
				wantB[j] += v
			}
		}
		for _, f := range []struct {
			name string
			got  []float32
			want []float64
		}{{"A", got.Weights[m].A.Data, wantA}, {"B", got.Weights[m].B.Data, wantB}} {
			for j := range f.want {
				if math.Abs(float64(f.got[j])-f.want[j]) > 1e-6*(1+math.Abs(f.want[j])) {
					t.Fatalf("%s %s[%d]: got %v, want %v", m, f.name, j, f.got[j], f.want[j])
				}
			}
		}
	}
	again := mustCombine(t, in, combine.Options{Method: combine.DARELinear, Weights: weights, Density: density, Seed: seed})
	if !reflect.DeepEqual(again.Weights, got.Weights) {
		t.Errorf("the same seed gave another adapter")
	}
	other := mustCombine(t, in, combine.Options{Method: combine.DARELinear, Weights: weights, Density: density, Seed: seed + 1})
	if reflect.DeepEqual(other.Weights, got.Weights) {
		t.Errorf("seeds %d and %d gave the same adapter", seed, seed+1)
	}
}

// TestInputsUnchanged checks that combining leaves its inputs as they were.
func TestInputsUnchanged(t *testing.T) {
	for _, method := range combine.Methods {
		in := randomInputs(6)
		if method != combine.Cat && method != combine.SVD {
			in = equalRankInputs(6)
		}
		before := make([]*adapter.Adapter, len(in))
		for i, x := range in {
			c := *x.Adapter
			c.LoRA = new(adapter.LoRAConfig)
			*c.LoRA = *x.Adapter.LoRA
			c.Weights = map[string]adapter.LoRAWeights{}
			for m, w := range x.Adapter.Weights {
				c.Weights[m] = adapter.LoRAWeights{A: w.A.Clone(), B: w.B.Clone()}
			}
			before[i] = &c
		}
		o := combine.Options{Method: method}
		if method == combine.TIES || method == combine.DARELinear || method == combine.DARETIES || method == combine.MagnitudePrune {
			o.Density = 0.5
		}
		mustCombine(t, in, o)
		for i, x := range in {
			if !reflect.DeepEqual(x.Adapter, before[i]) {
				t.Errorf("%s: input %d changed", method, i+1)
			}
		}
	}
}

// TestElementType checks that each combined module is stored in the
// element type of the first input's lora_A for it, rounded in memory as
// the file holds it, so that a saved adapter reads back the same.
func TestElementType(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	half := func(w adapter.LoRAWeights) adapter.LoRAWeights {
		for _, x := range []*adapter.Tensor{w.A, w.B} {
			x.DType = dtype.Float16
			for i, v := range x.Data {
				x.Data[i] = float32(float16Round(v))
			}
		}
		return w
	}
	a1 := lora(2, 4, false, map[string]adapter.LoRAWeights{"m": half(randomFactors(rng, 5, 2, 3)), "n": randomFactors(rng, 5, 2, 3)})
	a2 := lora(2, 2, false, map[string]adapter.LoRAWeights{"m": randomFactors(rng, 5, 2, 3), "n": half(randomFactors(rng, 5, 2, 3))})
	got := mustCombine(t, inputs(a1, a2), combine.Options{Method: combine.Cat, Weights: []float64{0.3, 0.7}})
	for m, want := range map[string]dtype.Type{"m": dtype.Float16, "n": dtype.Float32} {
		w := got.Weights[m]
		if w.A.DType != want || w.B.DType != want {
			t.Errorf("%s: got A %s, B %s; want %s", m, w.A.DType, w.B.DType, want)
		}
	}
	dir := t.TempDir()
	if err := adapter.SaveDir(dir, got); err != nil {
		t.Fatal(err)
	}
	back, err := adapter.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Weights, got.Weights) {
		t.Errorf("the float16 module does not read back as it was combined")
	}
}

// float16Round rounds v to the nearest float16, by its bits: 10 mantissa
// bits for normal values in float16's range (the fixture stays there).
func float16Round(v float32) float64 {
	if v == 0 {
		return 0
	}
	e := math.Floor(math.Log2(math.Abs(float64(v))))
	q := math.Ldexp(1, int(e)-10)
	return math.RoundToEven(float64(v)/q) * q
}
