package combine

// stack returns the factors of Σ coef_i·A_i·B_i side by side:
// X = [coef_1·A_1 | coef_2·A_2 | …] [in, Σr] and Y = [B_1; B_2; …]
// [Σr, out], so that X·Y is that sum exactly.
func stack(parts []part) (x, y matrix) {
	rank := 0
	for _, p := range parts {
		rank += p.a.cols
	}
	in, out := parts[0].a.rows, parts[0].b.cols
	x, y = newMatrix(in, rank), newMatrix(rank, out)
	off := 0
	for _, p := range parts {
		r := p.a.cols
		for i := 0; i < in; i++ {
			for j := 0; j < r; j++ {
				x.set(i, off+j, p.coef*p.a.at(i, j))
			}
		}
		copy(y.data[off*out:(off+r)*out], p.b.data)
		off += r
	}
	return x, y
}

// catModule is PEFT's cat: the stacked factors, whose rank is the sum of
// the parts' ranks.
func catModule(parts []part) (matrix, matrix) {
	return stack(parts)
}
