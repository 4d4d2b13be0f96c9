package rewrite

import (
	"math"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/combine"
)

// TestTopSVD checks topSVD against the full Jacobi SVD on a matrix with
// a gap after its leading r singular values (the values, and the
// subspaces: |Uᵀ·U_exact| and |Vᵀ·V_exact| are the identity) and on a
// Gaussian matrix whose spectrum has no gap, where the subspace is ill
// defined but the rank-r error ‖a − U·S·Vᵀ‖ must be the optimal
// √(Σⱼ≥r σⱼ²) to 1e-9. A warm start from its own basis gives the same.
// Both shapes (rows > cols and rows < cols) are run, and a matrix small
// enough that the exact SVD is taken.
func TestTopSVD(t *testing.T) {
	rng := newRand(21)
	for _, c := range []struct {
		name          string
		rows, cols, r int
		gap           bool
	}{
		{"gap/tall", 60, 40, 4, true},
		{"gap/wide", 30, 70, 3, true},
		{"flat/tall", 64, 48, 4, false},
		{"flat/wide", 40, 90, 5, false},
		{"small", 10, 8, 3, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := make([]float64, c.rows*c.cols)
			for i := range a {
				a[i] = rng.NormFloat64()
			}
			if c.gap {
				for k := 0; k < c.r; k++ {
					u, v := make([]float64, c.rows), make([]float64, c.cols)
					for i := range u {
						u[i] = rng.NormFloat64()
					}
					for i := range v {
						v[i] = rng.NormFloat64()
					}
					for i := 0; i < c.rows; i++ {
						for j := 0; j < c.cols; j++ {
							a[i*c.cols+j] += u[i] * v[j] * float64(3+k) / math.Sqrt(float64(c.rows))
						}
					}
				}
			}
			k := min(c.rows, c.cols)
			ue, se, ve, err := combine.DecomposeSVD(slices.Clone(a), c.rows, c.cols)
			if err != nil {
				t.Fatal(err)
			}
			optimal := 0.0
			for _, x := range se[c.r:] {
				optimal += x * x
			}
			optimal = math.Sqrt(optimal)
			u, s, v, basis, err := topSVD(a, c.rows, c.cols, c.r, nil)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, u, s, v []float64) {
				t.Helper()
				approx := make([]float64, len(a))
				for i := 0; i < c.rows; i++ {
					for j := 0; j < c.cols; j++ {
						for q := 0; q < c.r; q++ {
							approx[i*c.cols+j] += u[i*c.r+q] * s[q] * v[j*c.r+q]
						}
					}
				}
				if got := frobenius(a, approx, nil); math.Abs(got-optimal) > 1e-9*optimal {
					t.Errorf("%s: rank-%d error %.12g, optimal %.12g", what, c.r, got, optimal)
				}
				for q := 0; q < c.r; q++ {
					if math.Abs(s[q]-se[q]) > 1e-6*se[0] && c.gap {
						t.Errorf("%s: σ%d = %.12g, exact %.12g", what, q, s[q], se[q])
					}
				}
				if !c.gap {
					return
				}
				for q := 0; q < c.r; q++ {
					du, dv := 0.0, 0.0
					for i := 0; i < c.rows; i++ {
						du += u[i*c.r+q] * ue[i*k+q]
					}
					for j := 0; j < c.cols; j++ {
						dv += v[j*c.r+q] * ve[j*k+q]
					}
					if math.Abs(math.Abs(du)-1) > 1e-6 || math.Abs(math.Abs(dv)-1) > 1e-6 || du*dv < 0 {
						t.Errorf("%s: triplet %d: uᵀu_exact %.9g, vᵀv_exact %.9g, want ±1 of one sign", what, q, du, dv)
					}
				}
			}
			check("cold", u, s, v)
			if basis != nil {
				u, s, v, _, err = topSVD(a, c.rows, c.cols, c.r, basis)
				if err != nil {
					t.Fatal(err)
				}
				check("warm", u, s, v)
			} else if c.name != "small" {
				t.Errorf("no basis returned for a %d×%d matrix at rank %d", c.rows, c.cols, c.r)
			}
		})
	}
}
