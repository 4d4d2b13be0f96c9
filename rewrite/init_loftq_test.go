package rewrite

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// plainQuantized returns D(Q(w)) of the [in, out] matrix w, as LoftQ's
// first step and "quantize" round it.
func plainQuantized(t *testing.T, w []float64, in, out int, o LoftQOptions) []float64 {
	t.Helper()
	v := make([]float32, len(w))
	for i, x := range w {
		v[i] = float32(x)
	}
	q, err := quant.Quantize(v, in, out, quant.Options{Bits: o.Bits, BlockSize: o.BlockSize})
	if err != nil {
		t.Fatal(err)
	}
	d, err := q.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	out64 := make([]float64, len(d))
	for i, x := range d {
		out64[i] = float64(x)
	}
	return out64
}

// frobenius returns ‖a − b − c‖_F, c nil for none; +Inf where a value
// is NaN.
func frobenius(a, b, c []float64) float64 {
	s := 0.0
	for i := range a {
		d := a[i] - b[i]
		if c != nil {
			d -= c[i]
		}
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		s += d * d
	}
	return math.Sqrt(s)
}

// lowRank returns scale·A·B for A [in, r] and B [r, out].
func lowRank(a, b []float64, in, out, r int, scale float64) []float64 {
	p := make([]float64, in*out)
	for i := 0; i < in; i++ {
		for o := 0; o < out; o++ {
			for k := 0; k < r; k++ {
				p[i*out+o] += a[i*r+k] * b[k*out+o]
			}
			p[i*out+o] *= scale
		}
	}
	return p
}

// TestLoftQIterates runs LoftQ's alternation on a fixture: a weight with a
// few large directions on top of noise, as trained weights have. At 4
// bits each iteration must not raise ‖W − deq − s·A·B‖ and the iterations
// must lower it overall; at 2 bits it falls and then rises on this
// fixture (round to nearest with fresh block scales is no projection onto
// one grid), and LoftQ must return the best iteration. Every iteration
// must beat plain quantization ‖W − deq₀‖, and the error of the factors
// and base returned, recomputed here from them, must be the least
// recorded.
func TestLoftQIterates(t *testing.T) {
	in, out, r := 64, 48, 4
	rng := newRand(14)
	w := make([]float64, in*out)
	for i := range w {
		w[i] = rng.NormFloat64() * 0.02
	}
	for k := 0; k < 6; k++ {
		u, v := make([]float64, in), make([]float64, out)
		for i := range u {
			u[i] = rng.NormFloat64()
		}
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		for i := 0; i < in; i++ {
			for o := 0; o < out; o++ {
				w[i*out+o] += u[i] * v[o] * 0.05 / float64(k+1)
			}
		}
	}
	for _, bits := range []int{2, 4} {
		o := LoftQOptions{Bits: bits, BlockSize: 16, Iterations: 8}
		scale := 2.0
		st, err := loftqFactors(w, in, out, r, scale, dtype.Float32, o)
		if err != nil {
			t.Fatal(err)
		}
		plain := frobenius(w, plainQuantized(t, w, in, out, o), nil)
		if math.Abs(st.plain-plain) > 1e-9*plain {
			t.Errorf("%d bits: LoftQ records plain quantization's error as %.9g; it is %.9g", bits, st.plain, plain)
		}
		t.Logf("%d bits: plain quantization ‖W − deq‖ = %.5g; LoftQ by iteration %.5g", bits, plain, st.errs)
		for i, e := range st.errs {
			if !(e < plain) {
				t.Errorf("%d bits: iteration %d: error %.6g, not below plain quantization's %.6g", bits, i+1, e, plain)
			}
			if bits == 4 && i > 0 && e > st.errs[i-1]*(1+1e-9) {
				t.Errorf("%d bits: iteration %d raised the error: %.8g after %.8g", bits, i+1, e, st.errs[i-1])
			}
		}
		least := slices.Min(st.errs)
		if !(least < st.errs[0]*(1-1e-3)) {
			t.Errorf("%d bits: %d iterations left the error at %.8g from %.8g", bits, o.Iterations, least, st.errs[0])
		}
		if bits == 2 && !(st.errs[len(st.errs)-1] > least) {
			t.Logf("2 bits: the error no longer rises on this fixture (%.6g): the best-iteration check below proves less", st.errs)
		}
		deq := make([]float64, len(st.deq))
		for i, v := range st.deq {
			deq[i] = float64(v)
		}
		wq, err := st.w.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		for i := range wq {
			if wq[i] != st.deq[i] {
				t.Fatalf("%d bits: the packed base dequantizes to %v at %d, the float base is %v", bits, wq[i], i, st.deq[i])
			}
		}
		a, b := make([]float64, len(st.a)), make([]float64, len(st.b))
		for i, v := range st.a {
			a[i] = float64(v)
		}
		for i, v := range st.b {
			b[i] = float64(v)
		}
		got := frobenius(w, deq, lowRank(a, b, in, out, r, scale))
		if math.Abs(got-least) > 1e-5*least {
			t.Errorf("%d bits: ‖W − deq − s·A·B‖ of the returned factors is %.8g; the least recorded is %.8g", bits, got, least)
		}
	}
}

// loftqCases are layers large enough for blocks of 16 along in.
var loftqCases = []layerCase{
	{name: "matmul", in: 64, out: 24, xShape: []int64{2, 3, 64}, elem: dtype.Float32, r: 4, loraA: 8},
	{name: "matmul-cast-transpose", in: 32, out: 16, xShape: []int64{5, 32}, elem: dtype.Float32, wTransposed: true, wCast: true, r: 2, loraA: 2, relu: true},
	{name: "gemm-transB-alpha", in: 48, out: 20, xShape: []int64{3, 48}, elem: dtype.Float32, gemm: true, transB: true, alpha: 0.5, beta: 1, r: 3, loraA: 12},
}

// TestInjectLoftQ injects init loftq with a float and a packed base into
// each layer form and checks in ONNX Runtime, against the float base: the
// fresh model is closer to the base than the same quantization without
// LoftQ; the packed base is a MatMulNBits layer and the float weight is
// gone; the site records A₀ and B₀; after "training" (random A and B) the
// merge computes what the adapted model does, and the converted adapter
// applied to the original float base is off by no more than LoftQ's
// remaining error allows (less than plain quantization's).
func TestInjectLoftQ(t *testing.T) {
	for ci, tc := range loftqCases {
		for _, pack := range []bool{false, true} {
			name := tc.name + "/float"
			if pack {
				name = tc.name + "/packed"
			}
			t.Run(name, func(t *testing.T) {
				rng := newRand(uint64(ci) + 60)
				base, weff, _ := layerModel(t, tc, rng)
				alpha := 1.0
				if tc.gemm {
					alpha = float64(tc.alpha)
				}
				o := LoftQOptions{Bits: 4, BlockSize: 16, Iterations: 3, Pack: pack}
				cfg := config(tc.r, tc.loraA, "layer.proj")
				cfg.InitLoRAWeights = adapter.InitLoftQ
				m := base.Clone()
				sites, sum, err := InjectLoRA(m, cfg, WithLoftQ(o))
				if err != nil {
					t.Fatal(err)
				}
				s := sites[0]
				if s.InitialA == "" || m.Initializer(s.InitialA) == nil || m.Initializer(s.InitialB) == nil {
					t.Fatalf("site records no initial factors: %+v", s)
				}
				l := layerNamed(t, m, "layer.proj")
				if l.Quantized() != pack {
					t.Fatalf("layer op %s with Pack %v", l.Op, pack)
				}
				if pack && m.Initializer("layer.proj.weight") != nil {
					t.Errorf("the float weight stays beside the packed one")
				}
				if pack && s.Weight != l.Weight {
					t.Errorf("site weight %q, layer's %q", s.Weight, l.Weight)
				}

				x := make([]float32, graph.NumElements(tc.xShape))
				for i := range x {
					x[i] = float32(rng.NormFloat64())
				}
				xt, err := rt.NewFloat32(tc.xShape, x)
				if err != nil {
					t.Fatal(err)
				}
				feeds := map[string]*rt.Tensor{"x": xt}
				y := func(m *graph.Model) []float64 {
					t.Helper()
					return run(t, session(t, m), feeds)["y"].ToFloat64()
				}
				dist := func(a, b []float64) float64 { return frobenius(a, b, nil) }
				yBase := y(base)

				// The same quantization without LoftQ: D(Q(W)) in the weight.
				w := make([]float64, len(weff))
				for i, v := range weff {
					w[i] = alpha * v
				}
				plainW := plainQuantized(t, w, tc.in, tc.out, o)
				plain := base.Clone()
				pv := make([]float32, len(plainW))
				for i := 0; i < tc.in; i++ {
					for j := 0; j < tc.out; j++ {
						v := float32(plainW[i*tc.out+j] / alpha)
						if tc.wTransposed != tc.transB {
							pv[j*tc.in+i] = v
						} else {
							pv[i*tc.out+j] = v
						}
					}
				}
				if err := graph.SetFloat32s(plain.Initializer("layer.proj.weight"), pv); err != nil {
					t.Fatal(err)
				}
				if q := sum.LoftQ; q == nil || q.Layers != 1 || q.Options != o.withDefaults() {
					t.Errorf("summary's LoftQ report %+v, want one layer with options %+v", q, o)
				} else {
					want := dist(w, plainW) / dist(w, make([]float64, len(w)))
					if math.Abs(q.PlainRelError-want) > 1e-6*want || !(q.RelError < q.PlainRelError) {
						t.Errorf("summary's LoftQ errors %.6g, plain %.6g; want plain %.6g and LoftQ below it", q.RelError, q.PlainRelError, want)
					}
				}
				loftqErr, plainErr := dist(y(m), yBase), dist(y(plain), yBase)
				t.Logf("output error against the float base: LoftQ %.4g, plain quantization %.4g", loftqErr, plainErr)
				if !(loftqErr < plainErr) {
					t.Errorf("LoftQ model is %.4g from the float base, plain quantization %.4g: LoftQ should be closer", loftqErr, plainErr)
				}

				// Training stands in as random A and B.
				for _, n := range []string{s.A, s.B} {
					tensor := m.Initializer(n)
					v := make([]float32, graph.NumElements(tensor.Dims))
					for i := range v {
						v[i] = float32(rng.NormFloat64() * 0.1)
					}
					if err := graph.SetFloat32s(tensor, v); err != nil {
						t.Fatal(err)
					}
				}
				yTrained := y(m)
				tol := 1e-5
				if tc.wCast {
					tol = 2e-3 // the merged weight is stored in float16
				}
				merged := m.Clone()
				if err := Merge(merged, Dequantize()); err != nil {
					t.Fatal(err)
				}
				if d := dist(y(merged), yTrained); d > tol*math.Max(1, dist(yTrained, make([]float64, len(yTrained)))) {
					t.Errorf("merged model is %.3g from the adapted one", d)
				}
				ad, err := ExtractAdapter(m)
				if err != nil {
					t.Fatal(err)
				}
				if ad.LoRA.R != 2*tc.r || ad.LoRA.InitLoRAWeights.FromWeights() {
					t.Errorf("exported adapter: r %d init %q, want the converted r %d", ad.LoRA.R, ad.LoRA.InitLoRAWeights, 2*tc.r)
				}
				applied := base.Clone()
				if _, _, err := ApplyLoRA(applied, ad); err != nil {
					t.Fatal(err)
				}
				off := dist(y(applied), yTrained)
				t.Logf("converted adapter on the float base: %.4g from the adapted model", off)
				// W + s·(A·B − A₀·B₀) − (deq + s·A·B) = W − deq − s·A₀·B₀:
				// the fresh model's error, but for float16 rounding.
				if !(off < plainErr) || math.Abs(off-loftqErr) > 0.05*loftqErr+tol {
					t.Errorf("converted adapter on the float base is %.4g from the adapted model; want LoftQ's own error %.4g, below plain quantization's %.4g", off, loftqErr, plainErr)
				}
			})
		}
	}
}

// TestLoftQRefusals: an int4 base, a rank over the weight's and a Gemm
// with beta ≠ 1 packed are refused with the model unchanged, and
// WithLoftQ refuses bad options.
func TestLoftQRefusals(t *testing.T) {
	tc := loftqCases[0]
	base, _, _ := layerModel(t, tc, newRand(5))
	cfg := config(tc.r, tc.loraA, "layer.proj")
	cfg.InitLoRAWeights = adapter.InitLoftQ
	m := base.Clone()
	if _, _, err := InjectLoRA(m, cfg, WithLoftQ(LoftQOptions{BlockSize: 16, Pack: true})); err != nil {
		t.Fatal(err)
	}
	if _, err := MergeWith(m, Requantize()); err != nil {
		t.Fatal(err)
	}
	int4 := m.Clone()
	if _, _, err := InjectLoRA(int4, cfg); err == nil || !strings.Contains(err.Error(), "already packed in a MatMulNBits layer") || !strings.Contains(err.Error(), "give the float model") {
		t.Errorf("LoftQ on an int4 base: got %v, want a refusal", err)
	}
	big := cfg
	big.R = tc.out + 1
	m = base.Clone()
	if _, _, err := InjectLoRA(m, big); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("LoftQ with rank over the weight's: got %v", err)
	}
	if w, b := values(t, m, "layer.proj.weight"), values(t, base, "layer.proj.weight"); !slices.Equal(w, b) {
		t.Errorf("a refused injection changed the weight")
	}
	gc := loftqCases[2]
	gc.beta = 2
	gbase, _, _ := layerModel(t, gc, newRand(6))
	gcfg := config(gc.r, gc.loraA, "layer.proj")
	gcfg.InitLoRAWeights = adapter.InitLoftQ
	if _, _, err := InjectLoRA(gbase.Clone(), gcfg, WithLoftQ(LoftQOptions{Pack: true, BlockSize: 16})); err == nil || !strings.Contains(err.Error(), "beta") {
		t.Errorf("packed LoftQ on a Gemm with beta 2: got %v", err)
	}
	if _, _, err := InjectLoRA(gbase.Clone(), gcfg, WithLoftQ(LoftQOptions{BlockSize: 16})); err != nil {
		t.Errorf("float LoftQ on a Gemm with beta 2: %v", err)
	}
	for _, bad := range []LoftQOptions{{Bits: 3}, {BlockSize: 24}, {Iterations: -1}, {Iterations: maxLoftQIterations + 1}} {
		if _, _, err := InjectLoRA(base.Clone(), cfg, WithLoftQ(bad)); err == nil || !strings.Contains(err.Error(), "loftq") {
			t.Errorf("WithLoftQ(%+v): got %v, want an error", bad, err)
		}
	}
}
