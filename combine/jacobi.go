package combine

import (
	"errors"
	"math"
	"sort"
)

// This file holds the singular value decomposition of a product of thin
// factors, X·Y with X [m, r] and Y [r, n], without forming the m×n
// product: QR of X and of Yᵀ reduces it to a small core, whose SVD a
// one-sided Jacobi method takes. Jacobi is exact to working precision and
// has high relative accuracy, and the core is at most r×r, so the cost is
// O((m+n)·r²). A general dense SVD (gonum's, or LAPACK's) would take
// O(m·n·min(m, n)) for the same answer.

// errNoConvergence reports a Jacobi SVD that did not settle.
var errNoConvergence = errors.New("the SVD did not converge")

// maxSweeps bounds the Jacobi sweeps; they converge quadratically, in well
// under 20 sweeps for cores of these sizes.
const maxSweeps = 80

// lowRankSVD returns X·Y = U·diag(S)·Vᵀ with U [m, q] and V [n, q] having
// orthonormal columns where S is not zero (zero columns elsewhere), S
// descending, and q = min(m, n, r).
func lowRankSVD(x, y matrix) (u matrix, s []float64, v matrix, err error) {
	qx, rx := householderQR(x)             // X = Qx·Rx, Rx [kx, r]
	qy, ry := householderQR(y.transpose()) // Yᵀ = Qy·Ry, Ry [ky, r]
	core := rx.mul(ry.transpose())         // X·Y = Qx·core·Qyᵀ, core [kx, ky]
	if core.rows >= core.cols {
		p, s, w, err := jacobiSVD(core) // core = P·S·Wᵀ
		if err != nil {
			return matrix{}, nil, matrix{}, err
		}
		return qx.mul(p), s, qy.mul(w), nil
	}
	p, s, w, err := jacobiSVD(core.transpose()) // coreᵀ = P·S·Wᵀ, core = W·S·Pᵀ
	if err != nil {
		return matrix{}, nil, matrix{}, err
	}
	return qx.mul(w), s, qy.mul(p), nil
}

// householderQR returns a = Q·R with Q [m, k] having orthonormal columns
// and R [k, n] upper triangular, k = min(m, n), by Householder
// reflections; rank-deficient a is fine (R then has zeros on its
// diagonal). It works on columns held contiguously (aᵀ's rows).
func householderQR(a matrix) (q, r matrix) {
	m, n := a.rows, a.cols
	k := min(m, n)
	cols := a.transpose() // row c is column c of a
	col := func(t matrix, c int) []float64 { return t.data[c*t.cols : (c+1)*t.cols] }
	vs := make([][]float64, k)
	betas := make([]float64, k)
	for j := 0; j < k; j++ {
		x := col(cols, j)[j:]
		norm := math.Sqrt(dot(x, x))
		if norm == 0 {
			continue
		}
		alpha := -norm
		if x[0] < 0 {
			alpha = norm
		}
		v := append([]float64(nil), x...)
		v[0] -= alpha
		vv := dot(v, v)
		if vv == 0 {
			continue
		}
		beta := 2 / vv
		for c := j; c < n; c++ {
			y := col(cols, c)[j:]
			axpy(-beta*dot(v, y), v, y)
		}
		vs[j], betas[j] = v, beta
	}
	r = newMatrix(k, n)
	for c := 0; c < n; c++ {
		for i := 0; i <= min(c, k-1); i++ {
			r.set(i, c, cols.at(c, i))
		}
	}
	// Q = H_0·H_1·…·H_{k-1} applied to the first k columns of I, the last
	// reflector first; H_j leaves the columns before j as they are.
	qcols := newMatrix(k, m) // row c is column c of Q
	for c := 0; c < k; c++ {
		qcols.set(c, c, 1)
	}
	for j := k - 1; j >= 0; j-- {
		v := vs[j]
		if v == nil {
			continue
		}
		for c := j; c < k; c++ {
			y := col(qcols, c)[j:]
			axpy(-betas[j]*dot(v, y), v, y)
		}
	}
	return qcols.transpose(), r
}

// dot returns x·y.
func dot(x, y []float64) float64 {
	s := 0.0
	for i, v := range x {
		s += v * y[i]
	}
	return s
}

// axpy adds a·x to y.
func axpy(a float64, x, y []float64) {
	for i, v := range x {
		y[i] += a * v
	}
}

// jacobiSVD returns c = P·diag(S)·Wᵀ for c [m, n] with m ≥ n, by
// one-sided (Hestenes) Jacobi rotations that make c's columns orthogonal:
// P [m, n] holds the normalised columns (zero where S is zero), S is
// descending, and W [n, n] is orthogonal.
func jacobiSVD(c matrix) (p matrix, s []float64, w matrix, err error) {
	m, n := c.rows, c.cols
	cols := c.transpose() // row j is column j of c
	vt := newMatrix(n, n) // row j is column j of W
	for j := 0; j < n; j++ {
		vt.set(j, j, 1)
	}
	tol := math.Max(1e-15, float64(m)*0x1p-52)
	converged := false
	for sweep := 0; sweep < maxSweeps && !converged; sweep++ {
		converged = true
		for a := 0; a < n-1; a++ {
			x := cols.data[a*m : (a+1)*m]
			for b := a + 1; b < n; b++ {
				y := cols.data[b*m : (b+1)*m]
				alpha, beta, gamma := 0.0, 0.0, 0.0
				for i := range x {
					alpha += x[i] * x[i]
					beta += y[i] * y[i]
					gamma += x[i] * y[i]
				}
				if gamma == 0 || math.Abs(gamma) <= tol*math.Sqrt(alpha)*math.Sqrt(beta) {
					continue
				}
				converged = false
				zeta := (beta - alpha) / (2 * gamma)
				t := 1 / (math.Abs(zeta) + math.Hypot(1, zeta))
				if zeta < 0 {
					t = -t
				}
				cs := 1 / math.Sqrt(1+t*t)
				sn := cs * t
				rotate(x, y, cs, sn)
				rotate(vt.data[a*n:(a+1)*n], vt.data[b*n:(b+1)*n], cs, sn)
			}
		}
	}
	if !converged {
		return matrix{}, nil, matrix{}, errNoConvergence
	}
	norms := make([]float64, n)
	for j := range norms {
		for _, v := range cols.data[j*m : (j+1)*m] {
			norms[j] = math.Hypot(norms[j], v)
		}
	}
	order := make([]int, n)
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(i, j int) bool { return norms[order[i]] > norms[order[j]] })
	p, w, s = newMatrix(m, n), newMatrix(n, n), make([]float64, n)
	for k, j := range order {
		s[k] = norms[j]
		for i := 0; i < n; i++ {
			w.set(i, k, vt.at(j, i))
		}
		if norms[j] == 0 {
			continue
		}
		for i := 0; i < m; i++ {
			p.set(i, k, cols.at(j, i)/norms[j])
		}
	}
	return p, s, w, nil
}

// rotate applies the plane rotation [cs sn; -sn cs] to the pair (x, y):
// x' = cs·x − sn·y, y' = sn·x + cs·y.
func rotate(x, y []float64, cs, sn float64) {
	for i := range x {
		xi, yi := x[i], y[i]
		x[i] = cs*xi - sn*yi
		y[i] = sn*xi + cs*yi
	}
}
