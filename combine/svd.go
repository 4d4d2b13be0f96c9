package combine

// svdModule returns the best rank-k factors of D = Σ coef_i·A_i·B_i with
// k = min(rank, in, out): A = U_k [in, k] and B = Σ_k·V_kᵀ [k, out] from
// D = U·Σ·Vᵀ, singular values in B as PEFT puts them in lora_B. Where D
// has fewer than k singular triplets (k exceeds the sum of the ranks),
// the remaining columns of A and rows of B are zero.
func svdModule(parts []part, rank int) (matrix, matrix, error) {
	x, y := stack(parts)
	u, s, v, err := lowRankSVD(x, y)
	if err != nil {
		return matrix{}, matrix{}, err
	}
	in, out := x.rows, y.cols
	k := min(rank, in, out)
	a, b := newMatrix(in, k), newMatrix(k, out)
	for j := 0; j < min(k, len(s)); j++ {
		for i := 0; i < in; i++ {
			a.set(i, j, u.at(i, j))
		}
		for i := 0; i < out; i++ {
			b.set(j, i, s[j]*v.at(i, j))
		}
	}
	return a, b, nil
}
