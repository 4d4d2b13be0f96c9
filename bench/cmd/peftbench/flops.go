package main

import (
	"slices"
	"strings"
)

// A gemm is one family of matrix products of a step: count products of an
// [M, K] by a [K, N] matrix, each 2·M·K·N floating-point operations (a
// multiply and an add per term). Linear marks the products of an
// activation with a weight matrix, whose rate the benchmark measures at
// their own shapes (the SGEMM worker); the others (attention's batched
// products, the adapters' rank-r ones) are counted at the reference rate.
type gemm struct {
	Part    string `json:"part"`
	M, K, N int
	Count   int  `json:"count"`
	Linear  bool `json:"linear,omitempty"`
}

// flops returns the floating-point operations of g, all counts together.
func (g gemm) flops() float64 {
	return 2 * float64(g.M) * float64(g.K) * float64(g.N) * float64(g.Count)
}

// The parts a step's work is counted in.
const (
	partForward      = "forward linears"
	partAttention    = "attention"
	partAdapter      = "adapters"
	partInputGrads   = "input gradients"
	partAttnGrads    = "attention gradients"
	partWeightGrads  = "weight gradients"
	partAdapterGrads = "adapter gradients"
)

// stepWork returns the matrix products of one step of mode on the model
// of s at batch rows of s.Seq tokens. Element-wise work (norms, softmax,
// RoPE, the loss, the optimizer) is left out: a few percent of the total,
// and not what a matrix unit limits.
//
// The forward pass multiplies every token by every linear weight of every
// layer and by the LM head, and, per head, Q·Kᵀ and P·V over the whole
// sequence (the causal mask is applied, not skipped). The LoRA backward
// pass computes input gradients only where a trainable factor lies below:
// not for the linears of layer 0 that read the same normalized embedding
// as the first adapted one (and the embedding is frozen), for every linear
// above it; attention's backward is four products (dP = dO·Vᵀ, dV = Pᵀ·dO,
// dQ = dS·K, dK = dSᵀ·Q) in every layer. Full fine-tuning adds every
// weight's gradient (Xᵀ·dY, one product of the forward's size) and every
// input gradient, down to the embedding. The adapters' own products are
// counted apart: x·A and (xA)·B forward; dB, d(xA), dA and, above layer
// 0's inputs, dx backward.
func stepWork(s Spec, mode string, batch int) []gemm {
	c := s.Model
	t := batch * s.Seq
	head := c.Hidden / c.Heads
	kv := c.KVHeads * head
	type linear struct {
		name    string
		in, out int
		first   bool // reads the layer's first input (the normalized residual) at layer 0
	}
	layer := []linear{
		{"q_proj", c.Hidden, c.Hidden, true}, {"k_proj", c.Hidden, kv, true}, {"v_proj", c.Hidden, kv, true},
		{"o_proj", c.Hidden, c.Hidden, false},
		{"gate_proj", c.Hidden, c.Intermediate, false}, {"up_proj", c.Hidden, c.Intermediate, false},
		{"down_proj", c.Intermediate, c.Hidden, false},
	}
	// The modes name what runs: "train-…" steps, "…lora…" adapters.
	lora := strings.Contains(mode, "lora")
	training := strings.HasPrefix(mode, "train-")
	full := mode == modeTrainFull
	adapted := func(name string) bool { return lora && slices.Contains(s.LoRA.Targets, name) }

	var out []gemm
	add := func(g gemm) {
		if g.Count > 0 {
			out = append(out, g)
		}
	}
	L := c.Layers
	for _, l := range layer {
		add(gemm{Part: partForward, M: t, K: l.in, N: l.out, Count: L, Linear: true})
		if adapted(l.name) {
			r := s.LoRA.R
			add(gemm{Part: partAdapter, M: t, K: l.in, N: r, Count: L})
			add(gemm{Part: partAdapter, M: t, K: r, N: l.out, Count: L})
			if training {
				add(gemm{Part: partAdapterGrads, M: r, K: t, N: l.out, Count: L})                      // dB = (xA)ᵀ·dy
				add(gemm{Part: partAdapterGrads, M: t, K: l.out, N: r, Count: L})                      // d(xA) = dy·Bᵀ
				add(gemm{Part: partAdapterGrads, M: l.in, K: t, N: r, Count: L})                       // dA = xᵀ·d(xA)
				add(gemm{Part: partAdapterGrads, M: t, K: r, N: l.in, Count: below(l.first, full, L)}) // dx
			}
		}
		if training {
			add(gemm{Part: partInputGrads, M: t, K: l.out, N: l.in, Count: below(l.first, full, L), Linear: true})
		}
		if full {
			add(gemm{Part: partWeightGrads, M: l.in, K: t, N: l.out, Count: L, Linear: true})
		}
	}
	add(gemm{Part: partForward, M: t, K: c.Hidden, N: c.VocabSize, Count: 1, Linear: true})
	if training {
		add(gemm{Part: partInputGrads, M: t, K: c.VocabSize, N: c.Hidden, Count: 1, Linear: true})
	}
	if full {
		add(gemm{Part: partWeightGrads, M: c.Hidden, K: t, N: c.VocabSize, Count: 1, Linear: true})
	}
	// Attention, per head and row of the batch: scores [seq, head]·[head,
	// seq], then [seq, seq]·[seq, head].
	heads := batch * c.Heads * L
	add(gemm{Part: partAttention, M: s.Seq, K: head, N: s.Seq, Count: heads})
	add(gemm{Part: partAttention, M: s.Seq, K: s.Seq, N: head, Count: heads})
	if training {
		add(gemm{Part: partAttnGrads, M: s.Seq, K: head, N: s.Seq, Count: heads})     // dP
		add(gemm{Part: partAttnGrads, M: s.Seq, K: s.Seq, N: head, Count: 3 * heads}) // dV, dQ, dK
	}
	return out
}

// below returns how many layers need the input gradient of a linear:
// all of them, but for one that reads layer 0's first input in a LoRA
// step, whose gradient would only reach the frozen embedding.
func below(first, full bool, layers int) int {
	if first && !full {
		return layers - 1
	}
	return layers
}

// totalFlops sums the work of gs.
func totalFlops(gs []gemm) float64 {
	var f float64
	for _, g := range gs {
		f += g.flops()
	}
	return f
}

// partFlops sums the work of gs by part.
func partFlops(gs []gemm) map[string]float64 {
	m := map[string]float64{}
	for _, g := range gs {
		m[g.Part] += g.flops()
	}
	return m
}

// linearShapes returns the distinct [K, N] weight shapes of gs's linear
// products, in order of first appearance.
func linearShapes(gs []gemm) [][2]int {
	var out [][2]int
	for _, g := range gs {
		if k := [2]int{g.K, g.N}; g.Linear && g.Part != partWeightGrads && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}
