package combine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
)

// tensor returns a float32 tensor [rows, cols] of vals.
func tensor(rows, cols int, vals ...float32) *adapter.Tensor {
	return adapter.NewTensor([]int64{int64(rows), int64(cols)}, vals)
}

// lora returns a LoRA adapter with rank r, alpha and rsLoRA as given, over
// the modules of weights.
func lora(r int, alpha float64, rslora bool, weights map[string]adapter.LoRAWeights) *adapter.Adapter {
	cfg := adapter.DefaultLoRAConfig(".*")
	cfg.R, cfg.Alpha, cfg.UseRSLoRA = r, alpha, rslora
	ad := adapter.NewLoRA(cfg)
	for m, w := range weights {
		ad.Weights[m] = w
	}
	return ad
}

// randomFactors returns A [in, r] and B [r, out] with normal values.
func randomFactors(rng *rand.Rand, in, r, out int) adapter.LoRAWeights {
	fill := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.5)
		}
		return v
	}
	return adapter.LoRAWeights{A: tensor(in, r, fill(in*r)...), B: tensor(r, out, fill(r*out)...)}
}

// inputs wraps adapters as combine inputs named a1, a2, ….
func inputs(ads ...*adapter.Adapter) []combine.Input {
	in := make([]combine.Input, len(ads))
	for i, ad := range ads {
		in[i] = combine.Input{Name: "a" + string(rune('1'+i)), Adapter: ad}
	}
	return in
}

// dense is a float64 matrix as rows.
type dense [][]float64

func denseOf(t *adapter.Tensor) dense {
	rows, cols := int(t.Shape[0]), int(t.Shape[1])
	d := zeros(rows, cols)
	for i := range d {
		for j := range d[i] {
			d[i][j] = float64(t.Data[i*cols+j])
		}
	}
	return d
}

func zeros(rows, cols int) dense {
	d := make(dense, rows)
	for i := range d {
		d[i] = make([]float64, cols)
	}
	return d
}

func (a dense) mul(b dense) dense {
	out := zeros(len(a), len(b[0]))
	for i := range a {
		for k := range b {
			for j := range b[k] {
				out[i][j] += a[i][k] * b[k][j]
			}
		}
	}
	return out
}

func (a dense) scale(s float64) dense {
	out := zeros(len(a), len(a[0]))
	for i := range a {
		for j := range a[i] {
			out[i][j] = s * a[i][j]
		}
	}
	return out
}

func (a dense) add(b dense) dense {
	out := zeros(len(a), len(a[0]))
	for i := range a {
		for j := range a[i] {
			out[i][j] = a[i][j] + b[i][j]
		}
	}
	return out
}

func (a dense) transpose() dense {
	out := zeros(len(a[0]), len(a))
	for i := range a {
		for j := range a[i] {
			out[j][i] = a[i][j]
		}
	}
	return out
}

// norm returns the Frobenius norm.
func (a dense) norm() float64 {
	s := 0.0
	for i := range a {
		for _, v := range a[i] {
			s += v * v
		}
	}
	return math.Sqrt(s)
}

// maxDiff returns the largest |a - b|: +Inf where the shapes differ or a
// value is NaN.
func maxDiff(a, b dense) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return math.Inf(1)
		}
		for j := range a[i] {
			e := math.Abs(a[i][j] - b[i][j])
			if math.IsNaN(e) {
				return math.Inf(1)
			}
			d = math.Max(d, e)
		}
	}
	return d
}

// TestMaxDiffSeesNaN: a NaN, on either side or both, is no match.
func TestMaxDiffSeesNaN(t *testing.T) {
	nan := math.NaN()
	for _, c := range [][2]dense{{{{1, nan}}, {{1, 2}}}, {{{1, 2}}, {{1, nan}}}, {{{nan}}, {{nan}}}} {
		if d := maxDiff(c[0], c[1]); !math.IsInf(d, 1) {
			t.Errorf("maxDiff(%v, %v) = %v, want +Inf", c[0], c[1], d)
		}
	}
	if d := maxDiff(dense{{1, 2}}, dense{{1, 2.5}}); d != 0.5 {
		t.Errorf("maxDiff = %v, want 0.5", d)
	}
}

// delta returns module's s·A·B in float64.
func delta(ad *adapter.Adapter, module string) dense {
	w := ad.Weights[module]
	return denseOf(w.A).mul(denseOf(w.B)).scale(ad.LoRA.ScalingFor(module))
}

// symmetricEigen returns the eigenvalues (descending) and eigenvectors
// (columns) of the symmetric matrix a by the cyclic two-sided Jacobi
// method: a check of the package's SVD by a different algorithm on the
// dense product.
func symmetricEigen(a dense) ([]float64, dense) {
	n := len(a)
	m := zeros(n, n)
	v := zeros(n, n)
	for i := range m {
		copy(m[i], a[i])
		v[i][i] = 1
	}
	for sweep := 0; sweep < 100; sweep++ {
		off := 0.0
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				off += m[p][q] * m[p][q]
			}
		}
		if off < 1e-30 {
			break
		}
		for p := 0; p < n; p++ {
			for q := p + 1; q < n; q++ {
				if m[p][q] == 0 {
					continue
				}
				theta := (m[q][q] - m[p][p]) / (2 * m[p][q])
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := 0; k < n; k++ { // m = m·J
					mkp, mkq := m[k][p], m[k][q]
					m[k][p], m[k][q] = c*mkp-s*mkq, s*mkp+c*mkq
				}
				for k := 0; k < n; k++ { // m = Jᵀ·m
					mpk, mqk := m[p][k], m[q][k]
					m[p][k], m[q][k] = c*mpk-s*mqk, s*mpk+c*mqk
				}
				for k := 0; k < n; k++ {
					vkp, vkq := v[k][p], v[k][q]
					v[k][p], v[k][q] = c*vkp-s*vkq, s*vkp+c*vkq
				}
			}
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	for i := range order { // selection sort, descending
		for j := i + 1; j < n; j++ {
			if m[order[j]][order[j]] > m[order[i]][order[i]] {
				order[i], order[j] = order[j], order[i]
			}
		}
	}
	vals := make([]float64, n)
	vecs := zeros(n, n)
	for k, j := range order {
		vals[k] = m[j][j]
		for i := 0; i < n; i++ {
			vecs[i][k] = v[i][j]
		}
	}
	return vals, vecs
}

// bestRank returns the best rank-k approximation of d and the squared
// Frobenius norm of what it leaves out (the sum of the tail's squared
// singular values), from the eigen-decomposition of dᵀ·d: d·V_k·V_kᵀ.
func bestRank(d dense, k int) (dense, float64) {
	vals, vecs := symmetricEigen(d.transpose().mul(d))
	vk := zeros(len(vecs), k)
	for i := range vecs {
		copy(vk[i], vecs[i][:k])
	}
	tail := 0.0
	for _, l := range vals[k:] {
		tail += math.Max(l, 0)
	}
	return d.mul(vk).mul(vk.transpose()), tail
}

func mustCombine(t *testing.T, in []combine.Input, o combine.Options) *adapter.Adapter {
	t.Helper()
	ad, err := combine.Adapters(in, o)
	if err != nil {
		t.Fatalf("%s: %v", o.Method, err)
	}
	return ad
}
