package quant

// Dequantize returns the K×N float32 matrix that w stands for, row-major
// as a MatMul's B input holds it: element (k, n) is (q − z)·s for the code
// q of row k in column n and the scale s and zero point z of its block,
// computed in float32 as ONNX Runtime's CPU kernel does. Padding rows are
// left out.
func (w *Weight) Dequantize() ([]float32, error) {
	return w.DequantizeBlocks(0, w.KBlocks())
}

// DequantizeBlocks returns rows first·BlockSize up to
// min((first+count)·BlockSize, K) of the dequantized matrix, [rows, N]
// row-major: the part of the weight that blocks first … first+count−1 of
// every column hold. A caller that dequantizes a layer a few blocks at a
// time never holds the whole float matrix.
func (w *Weight) DequantizeBlocks(first, count int) ([]float32, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	kb := w.KBlocks()
	if first < 0 || count < 0 || first+count > kb {
		return nil, errorf("blocks %d to %d: the weight has blocks 0 to %d", first, first+count-1, kb-1)
	}
	k0 := first * w.BlockSize
	k1 := min((first+count)*w.BlockSize, w.K)
	rows := max(k1-k0, 0)
	out := make([]float32, rows*w.N)
	blob := w.BlobSize()
	parallelFor(w.N, func(lo, hi int) {
		codes := make([]uint8, w.BlockSize)
		for n := lo; n < hi; n++ {
			for j := first; j < first+count; j++ {
				off := (n*kb + j) * blob
				UnpackCodes(codes, w.B[off:off+blob], w.Bits)
				s, z := w.Scales[n*kb+j], w.zeroPoint(n, j)
				for r, q := range codes {
					k := j*w.BlockSize + r
					if k >= w.K {
						break
					}
					if w.GIdx != nil {
						b := int(w.GIdx[k])
						s, z = w.Scales[n*kb+b], w.zeroPoint(n, b)
					}
					out[(k-k0)*w.N+n] = (float32(q) - z) * s
				}
			}
		}
	})
	return out, nil
}
