package combine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestLowRankSVD checks X·Y = U·diag(S)·Vᵀ with orthonormal U and V
// columns (where S is not zero) and S descending, for tall, wide,
// rank-deficient and zero products.
func TestLowRankSVD(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(rows, cols int) matrix {
		m := newMatrix(rows, cols)
		for i := range m.data {
			m.data[i] = rng.NormFloat64()
		}
		return m
	}
	for _, test := range []struct {
		reason string
		x, y   matrix
		rank   int // of X·Y
	}{
		{"square factors", random(6, 6), random(6, 6), 6},
		{"thin", random(40, 3), random(3, 30), 3},
		{"in smaller than r", random(2, 5), random(5, 7), 2},
		{"out smaller than r", random(9, 5), random(5, 3), 3},
		{"repeated columns", func() matrix {
			x := random(10, 4)
			for i := 0; i < 10; i++ {
				x.set(i, 3, 2*x.at(i, 1)) // rank 3
			}
			return x
		}(), random(4, 8), 3},
		{"zero", newMatrix(5, 2), random(2, 4), 0},
	} {
		u, s, v, err := lowRankSVD(test.x, test.y)
		if err != nil {
			t.Fatalf("%s: %v", test.reason, err)
		}
		want := test.x.mul(test.y)
		q := min(test.x.rows, test.y.cols, test.x.cols)
		if len(s) != q || u.cols != q || v.cols != q {
			t.Fatalf("%s: got %d singular values, U %dx%d, V %dx%d; want %d", test.reason, len(s), u.rows, u.cols, v.rows, v.cols, q)
		}
		scale := 1.0
		for _, x := range want.data {
			scale = math.Max(scale, math.Abs(x))
		}
		for i := 0; i < want.rows; i++ {
			for j := 0; j < want.cols; j++ {
				got := 0.0
				for k := range s {
					got += u.at(i, k) * s[k] * v.at(j, k)
				}
				if math.Abs(got-want.at(i, j)) > 1e-12*scale {
					t.Fatalf("%s: U·S·Vᵀ[%d,%d] = %v, want %v", test.reason, i, j, got, want.at(i, j))
				}
			}
		}
		nonzero := 0
		for k := range s {
			if k > 0 && s[k] > s[k-1] {
				t.Errorf("%s: singular values %v are not descending", test.reason, s)
			}
			if s[k] > 1e-10*scale {
				nonzero++
			}
		}
		if nonzero != test.rank {
			t.Errorf("%s: got %d nonzero singular values %v, want rank %d", test.reason, nonzero, s, test.rank)
		}
		for _, f := range []struct {
			name string
			m    matrix
		}{{"U", u}, {"V", v}} {
			for a := 0; a < nonzero; a++ {
				for b := a; b < nonzero; b++ {
					dot := 0.0
					for i := 0; i < f.m.rows; i++ {
						dot += f.m.at(i, a) * f.m.at(i, b)
					}
					want := 0.0
					if a == b {
						want = 1
					}
					if math.Abs(dot-want) > 1e-12 {
						t.Errorf("%s: %s columns %d·%d = %v, want %v", test.reason, f.name, a, b, dot, want)
					}
				}
			}
		}
	}
}
