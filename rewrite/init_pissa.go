package rewrite

import (
	"math"
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
	"github.com/peftonnx/peftonnx/graph"
)

// PiSSA and OLoRA (HF PEFT's init_lora_weights "pissa", "pissa_niter_N"
// and "olora") start A and B from the base weight and leave the residual
// in it, so that the injected model computes what the base does:
//
//	W_res = W − s·A₀·B₀, y = x·W_res + s·x·A·B
//
// with W the layer's [in, out] weight as it computes (Gemm's alpha
// included). PiSSA takes W = U·S·Vᵀ and A₀ = U_r·√(S_r/s), B₀ =
// √(S_r/s)·V_rᵀ, PEFT's split of the singular values divided by the
// scaling; pissa_niter_N, a randomized SVD with N subspace iterations in
// PEFT, is computed by the exact SVD here. OLoRA takes PEFT's QR of the
// [out, in] weight, W_torch = Q·R: A₀ = R_rᵀ and B₀ = Q_rᵀ (no division
// by the scaling, as PEFT does it).
//
// The site records A₀ and B₀ (Site.InitialA, Site.InitialB, initializers
// that nothing reads), so that the adapter taken out of the model
// (ExtractAdapter, the trainer's) is converted to a plain LoRA delta on the
// original W, as PEFT's path_initial_model_for_weight_conversion does:
// W_res + s·A·B = W + s·(A·B − A₀·B₀), a rank-2r adapter A' = [A A₀],
// B' = [B; −B₀] with r and lora_alpha doubled (lora_alpha·√2 with
// rsLoRA), so the scaling stays s. Merge of the model folds into W_res and
// so gives the same weights as MergeAdapter of the converted adapter into
// the original base. Fused projections, embeddings, convolutions, QDQ
// weights, AsInputs and DoRA refuse these inits.

// checkInitFromWeights refuses the layers that PiSSA, OLoRA and LoftQ do
// not take (LoftQ's packed base has more limits: checkLoftQ).
func checkInitFromWeights(l Linear, cfg *adapter.LoRAConfig, key string, asInputs bool) error {
	init := cfg.InitLoRAWeights
	switch {
	case l.Kind == KindEmbedding || l.Kind == KindConv:
		return layerErr(l, "init %s starts from a linear weight, not %s", init, articled(l.Kind))
	case cfg.EnableFor(key) != nil:
		return layerErr(l, "init %s: a fused projection (enable_lora_list) has no single weight to decompose", init)
	case asInputs:
		return layerErr(l, "init %s writes A and B and the residual weight; AsInputs has no A and B to write", init)
	case cfg.UseDoRA:
		return layerErr(l, "init %s with use_dora is not supported", init)
	case l.Quantized() && init == adapter.InitLoftQ:
		return layerErr(l, "init loftq quantizes the layer's float weight itself, and weight %q is already packed in a MatMulNBits layer, so its float values are gone: give the float model (LoftQ then writes the int4 layer itself)", l.Weight)
	case l.Op == OpAttention || l.Quantized():
		return layerErr(l, "init %s needs the layer's float weight as one matrix; %s packs it", init, l.Op)
	case l.Dequantized():
		return layerErr(l, "init %s: weight %q is %s behind DequantizeLinear; the residual would not be on its grid", init, l.Weight, l.WeightDType)
	case l.SharedWeight:
		return layerErr(l, "init %s: weight %q is shared with other nodes, which the residual would change too", init, l.Weight)
	}
	return nil
}

// initFromWeights returns A₀ [in, r] and B₀ [r, out] of layer l for cfg's
// init.
func initFromWeights(m *graph.Model, cfg *adapter.LoRAConfig, l Linear, r int, scale float64) (a, b []float32, err error) {
	w, err := effectiveWeight(m, l)
	if err != nil {
		return nil, nil, err
	}
	in, out := int(l.In), int(l.Out)
	if r > min(in, out) {
		return nil, nil, layerErr(l, "init %s: rank %d exceeds the %d×%d weight's %d", cfg.InitLoRAWeights, r, in, out, min(in, out))
	}
	var a64, b64 []float64
	if cfg.InitLoRAWeights == adapter.InitOLoRA {
		a64, b64 = make([]float64, in*r), make([]float64, r*out)
		// PEFT's QR of the [out, in] weight: Wᵀ = Q·R.
		q, rr := combine.DecomposeQR(transpose(w, in, out), out, in)
		k := min(in, out)
		for j := 0; j < r; j++ {
			for i := 0; i < in; i++ {
				a64[i*r+j] = rr[j*in+i] // A₀ = R_rᵀ
			}
			for o := 0; o < out; o++ {
				b64[j*out+o] = q[o*k+j] // B₀ = Q_rᵀ
			}
		}
	} else {
		u, s, v, err := combine.DecomposeSVD(slices.Clone(w), in, out)
		if err != nil {
			return nil, nil, layerErr(l, "init %s: %w", cfg.InitLoRAWeights, err)
		}
		a64, b64 = svdFactors(u, s, v, min(in, out), in, out, r, scale)
	}
	return narrow(a64), narrow(b64), nil
}

// svdFactors splits the top r singular triplets of an [in, out] matrix,
// U [in, k], singular values s and V [out, k], into LoRA factors whose
// product times scale is their rank-r part: A = U_r·√(S_r/scale) [in, r]
// and B = √(S_r/scale)·V_rᵀ [r, out]. PiSSA starts from them, and LoftQ
// fits them to each quantization residual.
func svdFactors(u, s, v []float64, k, in, out, r int, scale float64) (a, b []float64) {
	a, b = make([]float64, in*r), make([]float64, r*out)
	for j := 0; j < r; j++ {
		root := math.Sqrt(s[j] / scale)
		for i := 0; i < in; i++ {
			a[i*r+j] = u[i*k+j] * root
		}
		for o := 0; o < out; o++ {
			b[j*out+o] = root * v[o*k+j]
		}
	}
	return a, b
}

// narrow rounds v to float32.
func narrow(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// initialFactors adds a site's A₀ and B₀ as initializers that nothing
// reads, owned by the site (Site.Initializers), so Merge removes them.
func (b *loraGraph) initialFactors(p *modulePlan) {
	s := b.site
	m := b.g.Model()
	s.InitialA, s.InitialB = s.A+".initial", s.B+".initial"
	m.AddInitializer(graph.NewFloat32Tensor(s.InitialA, s.DType, s.AShape(int64(s.R)), p.a))
	m.AddInitializer(graph.NewFloat32Tensor(s.InitialB, s.DType, s.BShape(int64(s.R)), p.b))
	s.Initializers = append(s.Initializers, s.InitialA, s.InitialB)
}

// convertedWeights returns the plain LoRA factors of a site started from
// the weights: A' = [A A₀] [in, 2r] and B' = [B; −B₀] [2r, out].
func convertedWeights(s Site, a, b, a0, b0 []float32) (ac, bc []float32) {
	in, out, r := int(s.In), int(s.Out), s.R
	ac = make([]float32, in*2*r)
	for i := 0; i < in; i++ {
		copy(ac[i*2*r:], a[i*r:(i+1)*r])
		copy(ac[i*2*r+r:], a0[i*r:(i+1)*r])
	}
	bc = make([]float32, 2*r*out)
	copy(bc, b)
	for i, v := range b0 {
		bc[r*out+i] = -v
	}
	return ac, bc
}

// convertedConfig returns cfg for the converted adapter: every rank and
// lora_alpha doubled (alpha·√2 with rsLoRA), so that each scaling stays,
// and the default init.
func convertedConfig(cfg adapter.LoRAConfig) adapter.LoRAConfig {
	alpha := func(a float64) float64 {
		if cfg.UseRSLoRA {
			return a * math.Sqrt2
		}
		return 2 * a
	}
	cfg.R, cfg.Alpha = 2*cfg.R, alpha(cfg.Alpha)
	if cfg.RankPattern != nil {
		rp := map[string]int{}
		for k, v := range cfg.RankPattern {
			rp[k] = 2 * v
		}
		cfg.RankPattern = rp
	}
	if cfg.AlphaPattern != nil {
		ap := map[string]float64{}
		for k, v := range cfg.AlphaPattern {
			ap[k] = alpha(v)
		}
		cfg.AlphaPattern = ap
	}
	cfg.InitLoRAWeights = adapter.InitKaiming
	return cfg
}
