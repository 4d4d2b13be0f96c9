package combine

// DecomposeSVD returns a = U·diag(S)·Vᵀ for the dense rows×cols matrix a
// (row-major), with k = min(rows, cols): U [rows, k] and V [cols, k]
// (row-major) with orthonormal columns where S is not zero, S descending.
// It is the one-sided Jacobi SVD that the svd method uses, for callers
// outside this package (PiSSA initialisation in package rewrite).
func DecomposeSVD(a []float64, rows, cols int) (u, s, v []float64, err error) {
	m := matrix{rows: rows, cols: cols, data: a}
	var p, w matrix
	if rows >= cols {
		p, s, w, err = jacobiSVD(m) // a = P·S·Wᵀ
		if err != nil {
			return nil, nil, nil, err
		}
		return p.data, s, w.data, nil
	}
	p, s, w, err = jacobiSVD(m.transpose()) // aᵀ = P·S·Wᵀ, a = W·S·Pᵀ
	if err != nil {
		return nil, nil, nil, err
	}
	return w.data, s, p.data, nil
}

// DecomposeQR returns a = Q·R for the dense rows×cols matrix a (row-major), with
// k = min(rows, cols): Q [rows, k] with orthonormal columns and R [k, cols]
// upper triangular, by the Householder reflections the svd method uses
// (OLoRA initialisation in package rewrite).
func DecomposeQR(a []float64, rows, cols int) (q, r []float64) {
	qm, rm := householderQR(matrix{rows: rows, cols: cols, data: a})
	return qm.data, rm.data
}
