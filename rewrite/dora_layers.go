package rewrite

import "github.com/peftonnx/peftonnx/graph"

// DoRA on embeddings and convolutions, as HF PEFT's DoraEmbeddingLayer
// and DoraConv1d/2d/3dLayer compute it (dora.go has the linear layer's).
//
// An embedding's table W [vocab, dim] is read as a linear layer's weight
// [in, out] (embedding_layer.go), and PEFT takes its norm with
// fan_in_fan_out, per embedding dimension over the vocabulary: g = m/‖V_d‖
// with V = W + s·A·B, m [dim], and y = g·W[ids] + g·s·A[ids]·B (no bias).
// The graph computes ‖V_d‖² without a [vocab, dim] temporary:
//
//	‖V_d‖² = ‖W_d‖² + 2s·(AᵀW)_{·d}·B_{·d} + s²·B_{·d}ᵀ(AᵀA)B_{·d}
//
// with ‖W_d‖² a constant of the site, taken from the table at injection,
// AᵀW [r, dim] a product with the table as the Gather reads it, and AᵀA
// [r, r]. A table that trains along (trainable_modules) would leave that
// constant behind, and is refused with DoRA, as is a float16 or bfloat16
// branch whose type cannot hold ‖W_d‖². Where the branch's type is not
// the table's, the table is cast to it: a constant, which ONNX Runtime
// folds once at session start.
//
// A convolution's weight W [out, in, k…] is read as [out, in·k…], and the
// update as B [out, r]·A [r, in·k…], as PEFT flattens them: the norm is
// over all axes but the output channel, and g = m/‖V_o‖ [1, out, 1…]
// broadcasts against the output [N, out, …]:
//
//	y = base + (g − 1)·(base − bias) + g·s·conv(conv(x, A), B)
//
// The magnitude is stored [1, out, 1…], the shape of PEFT's parameter. In
// both the norm is detached in training, as a linear layer's (DoRANorm),
// and Merge rescales the stored weight per output feature as it does a
// linear layer's (rescaleColumns, on the matrix view of a convolution).

// embeddingNorm adds ‖V_d‖ [dim] of an embedding's site, from the table's
// norms tableNorms (‖W_d‖).
func (b *loraGraph) embeddingNorm(l Linear, sd *graph.Builder, tableNorms []float64) string {
	s := b.site
	w := b.branchTyped(l, sd, l.Node.Input[0])
	at := sd.Op("Transpose", []string{s.A}, graph.AttrInts("perm", 1, 0))
	norm := b.expandedNorm(sd, tableNorms, at, sd.Op("MatMul", []string{at, w}), s.B, int64(s.R))
	// [dim], so that a scalar id's output keeps its shape.
	return sd.Op("Reshape", []string{norm, b.int64s(s.Module+".lora_magnitude.shape", s.Out)})
}

// expandedNorm adds ‖V_j‖ [1, out] of V = W + s·A·B without V itself, from
// norms (‖W_j‖, constants of the site), at = Aᵀ [rk, in], atw = AᵀW
// [rk, out] and bm = B [rk, out], all in the branch's type:
//
//	‖V_j‖² = ‖W_j‖² + 1ᵀ·(B ⊙ (2s·AᵀW + s²·(AᵀA)·B))_j
//
// clamped at 0 before the root (rounding of the expansion could take a
// vanishing norm below it).
func (b *loraGraph) expandedNorm(sd *graph.Builder, norms []float64, at, atw, bm string, rk int64) string {
	s := b.site
	atab := sd.Op("MatMul", []string{sd.Op("MatMul", []string{at, s.A}), bm}) // [rk, out]
	cross := sd.Op("Add", []string{
		sd.Op("Mul", []string{atw, b.scalar(s.Module+".lora_magnitude.twice_scaling", s.DType, float32(2*s.Scale))}),
		sd.Op("Mul", []string{atab, b.scalar(s.Module+".lora_magnitude.scaling_squared", s.DType, float32(s.Scale*s.Scale))}),
	})
	sum := sd.Op("MatMul", []string{b.ones(1, rk), sd.Op("Mul", []string{bm, cross})}) // [1, out]
	sq := make([]float32, len(norms))
	for j, n := range norms {
		sq[j] = float32(n * n)
	}
	wsq := b.g.Initializer(s.Module+".lora_magnitude.weight_norm_sq", graph.NewFloat32Tensor("", s.DType, []int64{1, s.Out}, sq))
	return sd.Op("Sqrt", []string{sd.Op("Relu", []string{sd.Op("Add", []string{wsq, sum})})})
}

// convNorm adds ‖V_o‖ [1, out, 1…] of a convolution's site, reading B as
// bFull.
func (b *loraGraph) convNorm(l Linear, sd *graph.Builder, bFull string) string {
	s := b.site
	flat := s.In * kernelSize(s.Kernel)
	r := int64(s.R)
	w := b.branchTyped(l, sd, l.Node.Input[1])
	w = sd.Op("Reshape", []string{w, b.int64s(s.Module+".lora_magnitude.weight_shape", s.Out, flat)})
	a := sd.Op("Reshape", []string{s.A, b.int64s(s.Module+".lora_magnitude.a_shape", r, flat)})
	bm := sd.Op("Reshape", []string{bFull, b.int64s(s.Module+".lora_magnitude.b_shape", s.Out, r)})
	v := sd.Op("Add", []string{w, b.scaled(sd, sd.Op("MatMul", []string{bm, a}))}) // [out, in·k…]
	sq := sd.Op("MatMul", []string{sd.Op("Mul", []string{v, v}), b.ones(flat, 1)}) // [out, 1]
	sq = sd.Op("Reshape", []string{sq, b.int64s(s.Module+".lora_magnitude.shape", s.MagnitudeShape()...)})
	return sd.Op("Sqrt", []string{sq})
}

// checkDoRAExtras refuses a DoRA embedding whose table trains along
// (extras): its ‖W_d‖² is a constant of the graph.
func checkDoRAExtras(targets []Linear, plans map[string]*modulePlan, extras []extraParam) error {
	for _, l := range targets {
		if l.Kind != KindEmbedding || plans[l.Module].site.Magnitude == "" {
			continue
		}
		for _, e := range extras {
			if e.Name == l.Weight {
				return layerErr(l, "use_dora: the table %q trains along (trainable_modules), but DoRA's ‖W + s·A·B‖ of an embedding takes ‖W‖ as a constant of the graph; leave the table out of trainable_modules", l.Weight)
			}
		}
	}
	return nil
}
