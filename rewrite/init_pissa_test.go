package rewrite

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestInitFromWeights checks PiSSA and OLoRA on the linear layer forms:
// the residual plus s·A₀·B₀ gives W back, the factors have the structure
// of their decomposition (PiSSA: A₀'s columns orthogonal with norms
// √(σ/s) descending and the residual orthogonal to them; OLoRA: B₀'s rows
// orthonormal, A₀ = Rᵀ lower triangular), the model computes what the base
// does, and after "training" (random A and B) the converted rank-2r
// adapter applied to the original base and merged into it gives what the
// adapted model and its merge do.
func TestInitFromWeights(t *testing.T) {
	for _, init := range []adapter.LoRAInit{adapter.InitPiSSA, "pissa_niter_4", adapter.InitOLoRA} {
		for _, ci := range []int{0, 2, 3} { // matmul, cast-transpose, gemm-transB-alpha-beta
			tc := layerCases[ci]
			t.Run(string(init)+"/"+tc.name, func(t *testing.T) {
				rng := newRand(uint64(ci) + 40)
				base, weff, _ := layerModel(t, tc, rng)
				alpha := 1.0
				if tc.gemm {
					alpha = float64(tc.alpha)
				}
				cfg := config(tc.r, tc.loraA, "layer.proj")
				cfg.UseRSLoRA, cfg.InitLoRAWeights = tc.rslora, init
				m := base.Clone()
				sites, sum, err := InjectLoRA(m, cfg)
				if err != nil {
					t.Fatal(err)
				}
				s := sites[0]
				if sum.TrainableParams != int64(tc.r*(tc.in+tc.out)) {
					t.Errorf("trainable params %d, want A and B only (%d)", sum.TrainableParams, tc.r*(tc.in+tc.out))
				}
				a0, b0 := values(t, m, s.A), values(t, m, s.B)
				l := layerNamed(t, m, "layer.proj")
				res, err := effectiveWeight(m, l)
				if err != nil {
					t.Fatal(err)
				}
				in, out, r := tc.in, tc.out, tc.r
				for i := 0; i < in; i++ {
					for o := 0; o < out; o++ {
						ab := 0.0
						for k := 0; k < r; k++ {
							ab += a0[i*r+k] * b0[k*out+o]
						}
						want := alpha * weff[i*out+o]
						if d := math.Abs(res[i*out+o] + s.Scale*ab - want); d > 2e-3*math.Max(1, math.Abs(want)) || (!tc.wCast && d > 1e-5) {
							t.Fatalf("W_res + s·A₀·B₀ at [%d, %d]: %v, want W %v", i, o, res[i*out+o]+s.Scale*ab, want)
						}
					}
				}
				if init == adapter.InitOLoRA {
					checkOLoRA(t, a0, b0, in, out, r)
				} else {
					checkPiSSA(t, a0, res, in, out, r, tc.wCast)
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
				tol := 1e-5
				if tc.wCast {
					tol = 2e-2 // the residual is stored in float16
				}
				same := func(what string, got, want *graph.Model) {
					t.Helper()
					g, w := run(t, session(t, got), feeds)["y"].ToFloat64(), run(t, session(t, want), feeds)["y"].ToFloat64()
					for j := range w {
						if d := math.Abs(g[j]-w[j]) / math.Max(1, math.Abs(w[j])); d > tol || math.IsNaN(g[j]) {
							t.Fatalf("%s: y[%d]: got %v want %v", what, j, g[j], w[j])
						}
					}
				}
				same("fresh vs base", m, base)

				// Training stands in as random A and B.
				for _, name := range []string{s.A, s.B} {
					tensor := m.Initializer(name)
					v := make([]float32, graph.NumElements(tensor.Dims))
					for i := range v {
						v[i] = float32(rng.NormFloat64() * 0.3)
					}
					if err := graph.SetFloat32s(tensor, v); err != nil {
						t.Fatal(err)
					}
				}
				ad, err := ExtractAdapter(m)
				if err != nil {
					t.Fatal(err)
				}
				if ad.LoRA.R != 2*tc.r || ad.LoRA.ScalingFor("layer.proj") != s.Scale || ad.LoRA.InitLoRAWeights.FromWeights() {
					t.Errorf("converted adapter: r %d scaling %v init %q, want r %d scaling %v and a plain init", ad.LoRA.R, ad.LoRA.ScalingFor("layer.proj"), ad.LoRA.InitLoRAWeights, 2*tc.r, s.Scale)
				}
				applied := base.Clone()
				if _, _, err := ApplyLoRA(applied, throughHFDir(t, ad)); err != nil {
					t.Fatal(err)
				}
				same("converted applied to the base vs adapted", applied, m)
				merged := m.Clone()
				if err := Merge(merged); err != nil {
					t.Fatal(err)
				}
				same("merged vs adapted", merged, m)
				direct := base.Clone()
				if err := MergeAdapter(direct, ad); err != nil {
					t.Fatal(err)
				}
				mw, dw := values(t, merged, "layer.proj.weight"), values(t, direct, "layer.proj.weight")
				for i := range mw {
					if d := math.Abs(mw[i] - dw[i]); d > tol*math.Max(1, math.Abs(mw[i])) {
						t.Fatalf("merged weight [%d]: Merge %v, MergeAdapter of the converted adapter %v", i, mw[i], dw[i])
					}
				}
			})
		}
	}
}

// checkPiSSA checks A₀ [in, r]: its columns are orthogonal with norms
// descending, and the residual [in, out] is orthogonal to them.
func checkPiSSA(t *testing.T, a0, res []float64, in, out, r int, half bool) {
	t.Helper()
	tol := 1e-5
	if half {
		tol = 2e-2
	}
	col := func(j int) []float64 {
		c := make([]float64, in)
		for i := range c {
			c[i] = a0[i*r+j]
		}
		return c
	}
	prev := math.Inf(1)
	for j := 0; j < r; j++ {
		cj := col(j)
		nj := math.Sqrt(dot64(cj, cj))
		if nj > prev*(1+1e-6) {
			t.Errorf("A₀ column %d has norm %v after %v: singular values not descending", j, nj, prev)
		}
		prev = nj
		for k := j + 1; k < r; k++ {
			ck := col(k)
			if d := dot64(cj, ck) / (nj * math.Sqrt(dot64(ck, ck))); math.Abs(d) > 1e-5 {
				t.Errorf("A₀ columns %d and %d: cosine %v, want orthogonal", j, k, d)
			}
		}
		for o := 0; o < out; o++ {
			rc := make([]float64, in)
			for i := range rc {
				rc[i] = res[i*out+o]
			}
			if d := dot64(cj, rc) / nj; math.Abs(d) > tol {
				t.Errorf("residual column %d has %v along A₀ column %d, want 0", o, d, j)
			}
		}
	}
}

// checkOLoRA checks B₀ [r, out] for orthonormal rows and A₀ [in, r] for
// Rᵀ's shape: A₀[i][j] = 0 for i < j.
func checkOLoRA(t *testing.T, a0, b0 []float64, in, out, r int) {
	t.Helper()
	for j := 0; j < r; j++ {
		for k := j; k < r; k++ {
			want := 0.0
			if j == k {
				want = 1
			}
			if d := dot64(b0[j*out:(j+1)*out], b0[k*out:(k+1)*out]); math.Abs(d-want) > 1e-5 {
				t.Errorf("B₀ rows %d·%d = %v, want %v", j, k, d, want)
			}
		}
		for i := 0; i < min(j, in); i++ {
			if a0[i*r+j] != 0 && math.Abs(a0[i*r+j]) > 1e-6 {
				t.Errorf("A₀[%d][%d] = %v, want 0 (Rᵀ is lower triangular)", i, j, a0[i*r+j])
			}
		}
	}
}

// TestInitFromWeightsRefusals checks the layers PiSSA and OLoRA refuse.
func TestInitFromWeightsRefusals(t *testing.T) {
	tc := layerCases[7] // fused-qkv
	base, _, _ := layerModel(t, tc, newRand(3))
	cfg := config(tc.r, tc.loraA, "layer.proj")
	cfg.InitLoRAWeights = adapter.InitPiSSA
	cfg.EnableLoRAList = adapter.EnableLoRAList{PerTarget: [][]bool{tc.enable}}
	cfg.HeadDim = tc.headDim
	m := base.Clone()
	if _, _, err := InjectLoRA(m, cfg); err == nil || !strings.Contains(err.Error(), "fused projection") {
		t.Errorf("PiSSA on a fused projection: got %v, want a refusal", err)
	}
	if w, b := values(t, m, "layer.proj.weight"), values(t, base, "layer.proj.weight"); !slices.Equal(w, b) {
		t.Errorf("a refused injection changed the weight")
	}
	cfg = config(tc.r, tc.loraA, "layer.proj")
	cfg.InitLoRAWeights, cfg.UseDoRA = adapter.InitOLoRA, true
	if _, _, err := InjectLoRA(base.Clone(), cfg); err == nil || !strings.Contains(err.Error(), "use_dora") {
		t.Errorf("OLoRA with DoRA: got %v, want a refusal", err)
	}
	cfg.UseDoRA, cfg.R = false, tc.in+1
	if _, _, err := InjectLoRA(base.Clone(), cfg); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("OLoRA with a rank over the weight's: got %v, want a refusal", err)
	}
}

// values returns initializer name of m in float64.
func values(t *testing.T, m *graph.Model, name string) []float64 {
	t.Helper()
	v, err := m.Float32s(m.Initializer(name))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// layerNamed returns the layer of module name in m.
func layerNamed(t *testing.T, m *graph.Model, name string) Linear {
	t.Helper()
	ls, err := FindLinears(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.Module == name {
			return l
		}
	}
	t.Fatalf("no layer %q", name)
	return Linear{}
}

// dot64 returns x·y.
func dot64(x, y []float64) float64 {
	s := 0.0
	for i := range x {
		s += x[i] * y[i]
	}
	return s
}
