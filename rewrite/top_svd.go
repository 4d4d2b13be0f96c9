package rewrite

import (
	"math"
	"math/rand/v2"

	"github.com/peftonnx/peftonnx/combine"
)

// topSVD returns the r leading singular triplets of the dense rows×cols
// matrix a (row-major): U [rows, r] and V [cols, r] with orthonormal
// columns and S descending, as combine.DecomposeSVD's first r, without
// decomposing all of a. LoftQ needs only those, once per iteration, and
// the full one-sided Jacobi SVD of a 768×768 weight takes some 20 s on
// one core. The residual LoftQ decomposes is quantization noise, whose
// spectrum has no gap, so the subspace converges slowly (113 rounds in
// all for 4 LoftQ iterations on a 256×768 Gaussian weight at rank 8);
// the rank-r error, which is what LoftQ needs, is optimal to 1e-9 when
// it stops (TestTopSVD).
//
// It runs subspace iteration on p = r + topSVDOversample columns, Ω ←
// orth(aᵀ·orth(a·Ω)), until the energy Σⱼ<r σⱼ² that the subspace holds
// stops changing (relative change under topSVDTol, or topSVDMaxIters
// rounds), and then takes the exact SVD of the small p×cols projection.
// start, when not nil, is the [cols, p] basis returned by an earlier call
// on a nearby matrix (LoftQ's previous iteration), which shortens the
// iteration; it returns the basis it ended with. Where p reaches
// min(rows, cols), it decomposes a exactly.
func topSVD(a []float64, rows, cols, r int, start []float64) (u, s, v, basis []float64, err error) {
	k := min(rows, cols)
	p := min(r+topSVDOversample, k)
	if p >= k {
		uf, sf, vf, err := combine.DecomposeSVD(append([]float64(nil), a...), rows, cols)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		return leadingColumns(uf, rows, k, r), sf[:r], leadingColumns(vf, cols, k, r), nil, nil
	}
	omega := start
	if len(omega) != cols*p {
		rng := rand.New(rand.NewPCG(uint64(rows)<<32|uint64(cols), uint64(r)))
		omega = make([]float64, cols*p)
		for i := range omega {
			omega[i] = rng.NormFloat64()
		}
		omega, _ = combine.DecomposeQR(omega, cols, p)
	}
	prev := -1.0
	for it := 0; it < topSVDMaxIters; it++ {
		q, _ := combine.DecomposeQR(times(a, omega, rows, cols, p), rows, p)
		z, rz := combine.DecomposeQR(timesTransposed(a, q, rows, cols, p), cols, p)
		omega = z
		// aᵀ·q = z·rz, so rz's singular values are those of qᵀ·a.
		_, sr, _, err := combine.DecomposeSVD(rz, p, p)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		e := 0.0
		for _, x := range sr[:r] {
			e += x * x
		}
		if prev >= 0 && math.Abs(e-prev) <= topSVDTol*e {
			break
		}
		prev = e
	}
	q, _ := combine.DecomposeQR(times(a, omega, rows, cols, p), rows, p)
	small := transpose(timesTransposed(a, q, rows, cols, p), cols, p) // qᵀ·a [p, cols]
	ub, sb, vb, err := combine.DecomposeSVD(small, p, cols)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	full := times(q, ub, rows, p, p) // [rows, p]
	return leadingColumns(full, rows, p, r), sb[:r], leadingColumns(vb, cols, p, r), omega, nil
}

const (
	// topSVDOversample is how many columns beyond r topSVD iterates.
	topSVDOversample = 8
	// topSVDTol is the relative change of the leading energy at which
	// topSVD stops iterating.
	topSVDTol = 1e-9
	// topSVDMaxIters bounds topSVD's subspace iterations.
	topSVDMaxIters = 200
)

// times returns x·y for x [n, m] and y [m, p].
func times(x, y []float64, n, m, p int) []float64 {
	out := make([]float64, n*p)
	for i := 0; i < n; i++ {
		row := out[i*p : (i+1)*p]
		for c, xv := range x[i*m : (i+1)*m] {
			if xv == 0 {
				continue
			}
			for j, yv := range y[c*p : (c+1)*p] {
				row[j] += xv * yv
			}
		}
	}
	return out
}

// timesTransposed returns xᵀ·y for x [n, m] and y [n, p]: [m, p].
func timesTransposed(x, y []float64, n, m, p int) []float64 {
	out := make([]float64, m*p)
	for i := 0; i < n; i++ {
		yr := y[i*p : (i+1)*p]
		for c, xv := range x[i*m : (i+1)*m] {
			if xv == 0 {
				continue
			}
			row := out[c*p : (c+1)*p]
			for j, yv := range yr {
				row[j] += xv * yv
			}
		}
	}
	return out
}

// leadingColumns returns the first r columns of the rows×cols matrix v.
func leadingColumns(v []float64, rows, cols, r int) []float64 {
	out := make([]float64, rows*r)
	for i := 0; i < rows; i++ {
		copy(out[i*r:(i+1)*r], v[i*cols:i*cols+r])
	}
	return out
}
