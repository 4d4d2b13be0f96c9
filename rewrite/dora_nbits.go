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
// magnitude starts at ‖W_j‖. AᵀW [rk, out] is computed by the layer's own
// MatMulNBits node: the branch feeds it the activation's rows, x as
// [rows, in], with Aᵀ's rk rows [rk, in] appended (in the layer's type),
// and splits its [rows + rk, out] product (Site.BaseOutput) into the
// layer's output, reshaped back to x's leading dims, and AᵀW (less the
// node's bias, which it adds to every row). A second MatMulNBits node
// over the same packed tensors would do too, but ONNX Runtime pre-packs
// the weight for each MatMulNBits node that reads it, and holds each
// copy for the session's life: one node keeps the weight once (one
// 8192×8192 layer, accuracy_level 4: the session opens at +58 MiB
// anonymous with DoRA through a second node, +2 MiB through the rows;
// BenchmarkDoRAInt4Open). Subtracting the bias from AᵀW's rows rounds
// them at the bias's scale (in float16 too), which the norm's cross term
// takes well. The
// packed tensors stay bit for bit what they were, and no float W is ever
// made. The site records what the node read before (Site.Input) and
// reads now (Site.BaseInput), so that removing the branch gives the node
// back its input. As for a float layer, the norm is detached in training
// (Site.DoRANorm), so the gradient of x through the node's rows is the
// layer's own (the Aᵀ rows get none); the magnitude rescales the layer's
// output less its bias input (withoutBias). With products recomputed in
// the backward pass, the layer's output is made again through the rows,
// as a plain int4 layer's product is (autodiff's recompute, views).
//
// The rows are split by Split with computed sizes from opset 13, by Slice
// before (whose gradient, the dim being known only at run time, is a
// scatter: an old opset trains, slower).
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

// nbitsRows is what feedRows made for the norm of the int4 DoRA site
// being built: at = Aᵀ [rk, in] in the branch's type, and atw = AᵀW
// [rk, out] in the layer's type, the last rk rows of the node's product.
type nbitsRows struct{ at, atw string }

// feedRows makes int4 layer l's node multiply x's rows with Aᵀ's
// appended (see above), records them in b.rows and the site, and returns
// the layer's output cut from the node's product.
func (b *loraGraph) feedRows(l Linear, sd *graph.Builder, x string) string {
	s := b.site
	n := l.Node
	rk := s.AShape(int64(s.R))[1]
	b.ahead = true
	at := sd.Op("Transpose", []string{s.A}, graph.AttrInts("perm", 1, 0)) // [rk, in]
	atl := at
	if s.DType != l.DType {
		atl = sd.Op("Cast", []string{at}, graph.AttrInt("to", int64(l.DType)))
	}
	flat := sd.Op("Reshape", []string{x, b.int64s(s.Module+".lora_magnitude.rows_shape", -1, s.In)}) // [rows, in]
	in := sd.Op("Concat", []string{flat, atl}, graph.AttrInt("axis", 0))                             // [rows + rk, in]
	b.ahead = false
	b.g.Model().SetNodeInput(n, quant.InputA, in)
	s.Input, s.BaseInput = x, in

	prod := n.Output[0] // [rows + rk, out]
	var head, tail string
	if b.opset >= 13 {
		count := sd.Op("Gather", []string{sd.Op("Shape", []string{flat}), b.int64s(s.Module+".lora_magnitude.rows_axis", 0)}, graph.AttrInt("axis", 0))
		sizes := sd.Op("Concat", []string{count, b.int64s(s.Module+".lora_magnitude.rank", rk)}, graph.AttrInt("axis", 0))
		split := sd.Node("", "Split", []string{prod, sizes}, 2, graph.AttrInt("axis", 0))
		head, tail = split.Output[0], split.Output[1]
	} else {
		head = b.sliceFirst(sd, prod, 0, -rk)
		tail = b.sliceFirst(sd, prod, -rk, math.MaxInt64)
	}
	lead := b.sliceFirst(sd, sd.Op("Shape", []string{x}), 0, -1)
	shape := sd.Op("Concat", []string{lead, b.int64s(s.Module+".lora_magnitude.out", s.Out)}, graph.AttrInt("axis", 0))
	if len(n.Input) > quant.InputBias && n.Input[quant.InputBias] != "" {
		tail = sd.Op("Sub", []string{tail, n.Input[quant.InputBias]})
	}
	b.rows = &nbitsRows{at: at, atw: tail}
	return sd.Op("Reshape", []string{head, shape})
}

// sliceFirst adds v[start:end] along axis 0, as the model's opset
// writes Slice.
func (b *loraGraph) sliceFirst(sd *graph.Builder, v string, start, end int64) string {
	if b.opset < 10 {
		return sd.Op("Slice", []string{v}, graph.AttrInts("starts", start), graph.AttrInts("ends", end), graph.AttrInts("axes", 0))
	}
	name := b.site.Module + ".lora_magnitude.slice"
	return sd.Op("Slice", []string{v, b.int64s(name+"_start", start), b.int64s(name+"_end", end), b.int64s(name+"_axis", 0)})
}

// nbitsNorm returns ‖V[:, j]‖ [1, out] of int4 layer l in the branch's
// type, reading B as bFull, from norms = ‖W[:, j]‖ and the AᵀW rows of
// the layer's own product (feedRows).
func (b *loraGraph) nbitsNorm(l Linear, sd *graph.Builder, bFull string, norms []float64) string {
	s := b.site
	atw := b.branchTyped(l, sd, b.rows.atw)
	return b.expandedNorm(sd, norms, b.rows.at, atw, bFull, s.AShape(int64(s.R))[1])
}
