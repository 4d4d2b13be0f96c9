package rewrite

import (
	"math"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
)

// DoRA on an int4 (MatMulNBits) layer. Its weight W [in, out] exists only
// packed, and the norm ‖V[:, j]‖ of V = W + s·A·B is taken without a float
// copy of it, as an embedding's is (expandedNorm, dora_layers.go):
//
//	‖V_j‖² = ‖W_j‖² + 2s·Σ_k (AᵀW)_kj·B_kj + s²·B_jᵀ(AᵀA)B_j
//
// ‖W_j‖² is a constant of the site, computed at injection from the
// dequantized blocks in Go, a few blocks at a time, in float64; the
// magnitude starts at ‖W_j‖. AᵀW [r, out] is computed in the graph by a
// second MatMulNBits node that reads the layer's own packed B, scales and
// zero points (and attributes), with Aᵀ [r, in] as its input: the packed
// tensors stay bit for bit what they were, and no float W is ever made.
// ONNX Runtime pre-packs the weight for each MatMulNBits node that reads
// it, so the second node holds one more pre-packed copy of the weight (of
// about its packed size) for the session's life. As for a float layer,
// the norm is detached in training (Site.DoRANorm), so no gradient
// reaches the second node; the magnitude rescales the layer's output less
// its bias input (withoutBias).
//
// Merging into an int4 layer follows LoRA's (merge_nbits.go): Dequantize
// makes the layer a float MatMul holding m·V/‖V‖, exact, which keeps ‖V‖
// for Unmerge as a float merge does; Requantize rounds m·V/‖V‖ back into
// the layer's own layout and reports the error, and cannot be unmerged.

// nbitsNormElems bounds the floats of a layer's weight that
// nbitsWeightNorms dequantizes at once (16 MiB in float32).
const nbitsNormElems = 1 << 22

// nbitsWeightNorms returns ‖W[:, j]‖ per output feature j of int4 layer
// l's dequantized weight, in float64, dequantizing a slab of blocks at a
// time.
func nbitsWeightNorms(m *graph.Model, l Linear) ([]float64, error) {
	w, err := quant.ReadNode(m, l.Node)
	if err != nil {
		return nil, layerErr(l, "%w", err)
	}
	kb := w.KBlocks()
	step := max(1, nbitsNormElems/(w.BlockSize*w.N))
	sq := make([]float64, w.N)
	for first := 0; first < kb; first += step {
		vals, err := w.DequantizeBlocks(first, min(step, kb-first))
		if err != nil {
			return nil, layerErr(l, "%w", err)
		}
		for i, v := range vals {
			sq[i%w.N] += float64(v) * float64(v)
		}
	}
	for j, v := range sq {
		sq[j] = math.Sqrt(v)
	}
	return sq, nil
}

// nbitsNorm returns ‖V[:, j]‖ [1, out] of int4 layer l in the branch's
// type, reading B as bFull, from norms = ‖W[:, j]‖ and AᵀW by a second
// MatMulNBits node over the layer's packed tensors (see above).
func (b *loraGraph) nbitsNorm(l Linear, sd *graph.Builder, bFull string, norms []float64) string {
	s := b.site
	n := l.Node
	at := sd.Op("Transpose", []string{s.A}, graph.AttrInts("perm", 1, 0)) // [rk, in]
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
	atw := sd.Node(quant.Domain, quant.OpType, inputs, 1, lay.Attributes(quant.AccuracyLevelOf(n))...).Output[0] // Aᵀ·W [rk, out]
	atw = b.branchTyped(l, sd, atw)
	return b.expandedNorm(sd, norms, at, atw, bFull, s.AShape(int64(s.R))[1])
}
