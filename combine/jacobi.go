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
// diagonal).
func householderQR(a matrix) (q, r matrix) {
	m, n := a.rows, a.cols
	k := min(m, n)
	w := matrix{rows: m, cols: n, data: append([]float64(nil), a.data...)}
	vs := make([][]float64, k)
	betas := make([]float64, k)
	for j := 0; j < k; j++ {
		norm := 0.0
		for i := j; i < m; i++ {
			norm = math.Hypot(norm, w.at(i, j))
		}
		if norm == 0 {
			continue
		}
		alpha := -norm
		if w.at(j, j) < 0 {
			alpha = norm
		}
		v := make([]float64, m-j)
		for i := range v {
			v[i] = w.at(j+i, j)
		}
		v[0] -= alpha
		vv := 0.0
		for _, x := range v {
			vv += x * x
		}
		if vv == 0 {
			continue
		}
		beta := 2 / vv
		for col := j; col < n; col++ {
			d := 0.0
			for i, x := range v {
				d += x * w.at(j+i, col)
			}
			d *= beta
			for i, x := range v {
				w.set(j+i, col, w.at(j+i, col)-d*x)
			}
		}
		vs[j], betas[j] = v, beta
	}
	r = newMatrix(k, n)
	for i := 0; i < k; i++ {
		for j := i; j < n; j++ {
			r.set(i, j, w.at(i, j))
		}
	}
	// Q = H_0·H_1·…·H_{k-1} applied to the first k columns of I.
	q = newMatrix(m, k)
	for i := 0; i < k; i++ {
		q.set(i, i, 1)
	}
	for j := k - 1; j >= 0; j-- {
		v := vs[j]
		if v == nil {
			continue
		}
		for col := 0; col < k; col++ {
			d := 0.0
			for i, x := range v {
				d += x * q.at(j+i, col)
			}
			d *= betas[j]
			for i, x := range v {
				q.set(j+i, col, q.at(j+i, col)-d*x)
			}
		}
	}
	return q, r
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
