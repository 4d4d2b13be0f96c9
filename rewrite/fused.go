package rewrite

// Fused projections (PaddleNLP's LoRAMergedLinear and
// ColumnParallelLoRAMergedLinear) put n projections, such as q, k and v,
// in one weight of n·w output columns, and only some of them (the enable
// flags, k of them set) get a low-rank update. Each enabled part e has its
// own rank-r factors: A is [in, r·k], its columns grouped by part, and B is
// [r, w·k] with its columns laid out [heads, k, head_dim], the way the
// fused weight interleaves heads. The update of the whole layer is
// x·A·Bfull, where Bfull [r·k, n·w] is block-diagonal: rows of part e
// feed only the columns of projection e, placed head by head:
//
//	Bfull[e·r+i, h·n·d + g·d + j] = B[i, h·k·d + e·d + j]
//
// for the e-th enabled projection g, head h < w/d and j < d. The graph
// computes Bfull from B with Reshape, Transpose, a 0/1 mask and Flatten, so
// that only B's own values are parameters and the disabled projections get
// exactly zero, in training too. The activations pay for one [r·k, n·w]
// MatMul, as for plain LoRA of rank r·k.

// parts returns the indices of the enabled projections.
func enabledParts(enable []bool) []int {
	var idx []int
	for g, on := range enable {
		if on {
			idx = append(idx, g)
		}
	}
	return idx
}

// fullB expands B [r, w·k] of a fused projection to Bfull [r·k, n·w]; see
// the package comment above. With enable nil it returns b unchanged.
func fullB(b []float32, r int, enable []bool, headDim int, out int64) []float32 {
	if enable == nil {
		return b
	}
	n := len(enable)
	idx := enabledParts(enable)
	k := len(idx)
	w := int(out) / n
	d := headDim
	heads := w / d
	full := make([]float32, r*k*int(out))
	for e, g := range idx {
		for i := 0; i < r; i++ {
			src := b[i*w*k:]
			dst := full[(e*r+i)*int(out):]
			for h := 0; h < heads; h++ {
				copy(dst[h*n*d+g*d:h*n*d+g*d+d], src[h*k*d+e*d:h*k*d+e*d+d])
			}
		}
	}
	return full
}
