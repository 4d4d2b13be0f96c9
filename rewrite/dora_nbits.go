package rewrite

import (
	"math"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
)

// DoRA on an int4 (MatMulNBits) layer. Its weight W [in, out] exists only
// packed, and the norm ‖V[:, j]‖ of V = W + s·A·B is taken without a float
// copy of it, from
//
//	‖V_j‖² = ‖W_j‖² + 2s·Σ_k (AᵀW)_kj·B_kj + s²·B_jᵀ(AᵀA)B_j
//	       = ‖W_j‖² + s·1ᵀ·(B ⊙ (2·AᵀW + s·(AᵀA)·B))_j
//
// ‖W_j‖² is a constant [1, out] ("<module>.lora_magnitude.weight_norm_sq"),
// computed at injection from the dequantized blocks in Go, a few blocks
// at a time, in float64; the magnitude starts at its square root. AᵀW
// [r, out] is computed in the graph by a second MatMulNBits node that
// reads the layer's own packed B, scales and zero points, with Aᵀ [r, in]
// as its input: the packed tensors stay bit for bit what they were, and
// no float W is ever made. The rest is rank-r products. The sum is
// clamped at 0 (rounding of the expansion could take a vanishing norm
// below it) before the square root. As for a float layer, the norm is
// detached in training (Site.DoRANorm), so no gradient reaches the second
// node.
//
// Merging into an int4 layer follows LoRA's (merge_nbits.go): Dequantize
// makes the layer a float MatMul holding m·V/‖V‖, exact, which keeps ‖V‖
// for Unmerge as a float merge does; Requantize rounds m·V/‖V‖ back into
// the layer's own layout and reports the error, and cannot be unmerged.

// nbitsNormElems bounds the floats of a layer's weight that
// nbitsNormsSquared dequantizes at once (16 MiB in float32).
const nbitsNormElems = 1 << 22

// nbitsNormsSquared returns ‖W[:, j]‖² per output feature j of int4
// layer l's dequantized weight, in float64, dequantizing a slab of blocks
// at a time.
func nbitsNormsSquared(m *graph.Model, l Linear) ([]float64, error) {
	w, err := quant.ReadNode(m, l.Node)
	if err != nil {
		return nil, layerErr(l, "use_dora: %w", err)
	}
	kb := w.KBlocks()
	step := max(1, nbitsNormElems/(w.BlockSize*w.N))
	sq := make([]float64, w.N)
	for first := 0; first < kb; first += step {
		vals, err := w.DequantizeBlocks(first, min(step, kb-first))
		if err != nil {
			return nil, layerErr(l, "use_dora: %w", err)
		}
		for i, v := range vals {
			sq[i%w.N] += float64(v) * float64(v)
		}
	}
	return sq, nil
}

// sqrt32 returns the square root of each of v, as float32.
func sqrt32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(math.Sqrt(x))
	}
	return out
}

// nbitsNorm returns ‖V[:, j]‖ [1, out] of int4 layer l in the branch's
// type, from normSq = ‖W[:, j]‖² and the layer's packed tensors (see
// above).
func (b *loraGraph) nbitsNorm(l Linear, sd *graph.Builder, bFull string, normSq []float64) string {
	s := b.site
	n := l.Node
	sq32 := make([]float32, len(normSq))
	for j, v := range normSq {
		sq32[j] = float32(v)
	}
	wsq := b.g.Initializer(s.Module+".lora_magnitude.weight_norm_sq", graph.NewFloat32Tensor("", s.DType, []int64{1, s.Out}, sq32))

	at := sd.Op("Transpose", []string{s.A}, graph.AttrInts("perm", 1, 0)) // [r, in]
	x := at
	if s.DType != l.DType {
		x = sd.Op("Cast", []string{x}, graph.AttrInt("to", int64(l.DType)))
	}
	inputs := []string{x, n.Input[quant.InputB], n.Input[quant.InputScales]}
	if len(n.Input) > quant.InputZeroPoints && n.Input[quant.InputZeroPoints] != "" {
		inputs = append(inputs, n.Input[quant.InputZeroPoints])
	}
	// The layer's own attributes: LayoutOf checked them when the layer
	// was found.
	lay, _ := quant.LayoutOf(n)
	atw := sd.Node(quant.Domain, quant.OpType, inputs, 1, lay.Attributes(quant.AccuracyLevelOf(n))...).Output[0] // Aᵀ·W [r, out]
	if s.DType != l.DType {
		atw = sd.Op("Cast", []string{atw}, graph.AttrInt("to", int64(s.DType)))
	}
	gb := sd.Op("MatMul", []string{sd.Op("MatMul", []string{at, s.A}), bFull}) // AᵀA·B [r, out]
	two := b.scalar(s.Module+".lora_magnitude.two", s.DType, 2)
	sc := b.scalar(s.Module+".lora_magnitude.scaling", s.DType, float32(s.Scale))
	inner := sd.Op("Add", []string{sd.Op("Mul", []string{atw, two}), sd.Op("Mul", []string{gb, sc})})
	rk := s.AShape(int64(s.R))[1]
	ones := make([]float32, rk)
	for i := range ones {
		ones[i] = 1
	}
	onesName := b.g.Initializer(s.Module+".lora_magnitude.ones", graph.NewFloat32Tensor("", s.DType, []int64{1, rk}, ones))
	cross := sd.Op("MatMul", []string{onesName, sd.Op("Mul", []string{bFull, inner})}) // [1, out]
	sq := sd.Op("Add", []string{wsq, sd.Op("Mul", []string{cross, sc})})
	return sd.Op("Sqrt", []string{sd.Op("Relu", []string{sq})})
}
