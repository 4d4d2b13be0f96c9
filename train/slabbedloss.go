package train

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// headSlabElems bounds the floats of an int4 head's weight that the
// slabbed loss dequantizes at once, and so its slab of vocabulary rows,
// ⌊headSlabElems / hidden⌋: 5461 rows of a 768-wide head (16 MiB of
// weight, 22 MiB of scores for 1024 rows); a variable for the tests.
var headSlabElems int64 = 1 << 22

// slabbedCausalLM appends the causal-LM loss over an int4 LM head
// (MatMulNBits node n, without a bias) plus the LoRA branches t·B on it
// (none, or those that headOf peels off) against labels [batch, seq]
// (already aligned: IgnoreIndex where a position scores nothing), over
// all rows of h [batch, seq, hidden] at once and the vocabulary a slab of
// rows of Wᵀ at a time, in one pass: the head is dequantized once a step
// (twice with branches), not twice a chunk, and no [rows, vocab] tensor
// is ever whole.
//
// For each slab j, each after the one before: s_j = h·W_jᵀ + Σ t·B_j
// [rows, slab], B_j the slab's columns of B; M′ = max(M, max s_j) per
// row, r = exp(M − M′) (≤ 1), e_j = exp(s_j − M′); and, as log-sum-exp
// combines,
//
//	L ← L·r + Σ e_j,  A ← A·r + e_j·W_j,  A_t ← A_t·r + e_j·B_jᵀ,  M ← M′,
//
// so that at the end lse = M + log L, A / L = softmax·W, the gradient's
// softmax part, [rows, hidden], and A_t / L = softmax·Bᵀ [rows, r] for
// each branch; and the label's score s_label and the label's row of W,
// where the label falls in the slab, summed. The loss is Σ w·(lse −
// s_label) / count, w 0 for an ignored row, and its gradient with
// respect to h is G = c·(A/L − W_label), c = w / count, which the loss
// hands on as chunkedCausalLM does (S − S′, S = Σ h ⊙ G, S′ detached,
// the h that the slabs read detached).
//
// A branch adds two terms to S, as chunkedCausalLM's do: Σ t ⊙ D, D =
// c·(A_t/L − Bᵀ_label) (the label's column of B), and Σ B ⊙ E, E = c·tᵀ·
// (softmax − onehot) [r, vocab], D and E detached, the t and B that the
// slabs read detached. E needs the final lse, so it is a second pass over
// the slabs, each dequantized again and its scores recomputed: E_j = tᵀ·
// (c·(exp(s_j − lse) − onehot_j)), the E_j concatenated.
//
// Each slab waits for the one before by a 1 read from that slab's last
// values, so that ONNX Runtime holds one slab's scores and weight at a
// time and can neither fold the dequantized weight into an initializer
// nor run it early; the second pass starts after lse.
func slabbedCausalLM(b *lossGraph, n *onnxpb.NodeProto, branches []loraBranch, h, labels string) (string, error) {
	g := b.g
	m := g.Model()
	l, err := quant.LayoutOf(n)
	if err != nil {
		return "", errorf("%s: LM head: %v", b.name, err)
	}
	N, K := int64(l.N), int64(l.K)
	step := max(1, min(N, headSlabElems/K))
	hd := g.Op("Identity", []string{h})
	stops := []string{hd}
	hidden := g.Op("Slice", []string{g.Op("Shape", []string{h}), b.ints("hidden_start", 2), b.ints("hidden_end", 3)})
	x := g.Op("Reshape", []string{hd, g.Op("Concat", []string{b.ints("any_rows", -1), hidden}, graph.AttrInt("axis", 0))}) // [rows, hidden]
	y := g.Op("Reshape", []string{labels, b.ints("rows_by_one", -1, 1)})                                                   // [rows, 1]
	w := g.Op("Cast", []string{g.Op("Not", []string{g.Op("Equal", []string{y, b.int0("ignore_index", IgnoreIndex)})})}, graph.AttrInt("to", int64(dtype.Float32)))
	count := g.Op("Max", []string{b.sumAll(w), b.float0("one", 1)})
	c := g.Op("Div", []string{w, count})
	// The branches' t [rows, r] and B as the slabs read them: detached.
	// ranks are each t's last dimension, r.
	var ts, bs, ranks []string
	for _, br := range branches {
		rank := g.Op("Slice", []string{g.Op("Shape", []string{br.t}), b.ints("rank_start", 2), b.ints("rank_end", 3)})
		td, bd := g.Op("Identity", []string{br.t}), g.Op("Identity", []string{br.b})
		stops = append(stops, td, bd)
		ts = append(ts, g.Op("Reshape", []string{td, g.Op("Concat", []string{b.ints("any_rows", -1), rank}, graph.AttrInt("axis", 0))}))
		bs = append(bs, bd)
		ranks = append(ranks, rank)
	}
	// dimOne is 1 read from dim axis of v over like, the same size: a
	// data dependency on v.
	dimOne := func(v string, axis int64, like string) string {
		return g.Op("Div", []string{g.Op("Slice", []string{g.Op("Shape", []string{v}), b.ints("dim_start", axis), b.ints("dim_end", axis+1)}), like})
	}
	unit := b.ints("unit", 1)
	rowMax := func(s string) string {
		if b.opset >= 18 {
			return g.Op("ReduceMax", []string{s, unit}, graph.AttrInt("keepdims", 1))
		}
		return g.Op("ReduceMax", []string{s}, graph.AttrInts("axes", 1), graph.AttrInt("keepdims", 1))
	}
	rowSum := func(s string) string { return g.Op("ReduceSum", []string{s, unit}, graph.AttrInt("keepdims", 1)) }
	// slab appends slab lo…hi's dequantized W_j, each branch's B_j and
	// the scores s_j.
	slab := func(after string, lo, hi int64) (wj string, bj []string, s string, err error) {
		wj, err = autodiff.DequantizeNBitsRows(m, n, after, lo, hi, g.Scope()+"/head")
		if err != nil {
			return "", nil, "", errorf("%s: LM head: %v", b.name, err)
		}
		s = g.Op("Gemm", []string{x, wj}, graph.AttrInt("transB", 1))
		for i := range branches {
			bij := b.slice(bs[i], lo, hi, 1)
			bj = append(bj, bij)
			s = g.Op("Gemm", []string{ts[i], bij, s})
		}
		return wj, bj, s, nil
	}
	after := dimOne(x, 1, hidden)
	var mx, se, picked, acc, labelRows string
	accT := make([]string, len(branches))
	var ats, ins []string // each slab's label index in it and whether it is there
	for lo := int64(0); lo < N; lo += step {
		hi := min(N, lo+step)
		wj, bj, s, err := slab(after, lo, hi)
		if err != nil {
			return "", err
		}
		mj := rowMax(s)
		if mx != "" {
			mj = g.Op("Max", []string{mx, mj})
		}
		e := g.Op("Exp", []string{g.Op("Sub", []string{s, mj})})
		ej, gj := rowSum(e), g.Op("MatMul", []string{e, wj})
		var r string
		if mx != "" {
			r = g.Op("Exp", []string{g.Op("Sub", []string{mx, mj})})
			ej = g.Op("Add", []string{g.Op("Mul", []string{se, r}), ej})
			gj = g.Op("Add", []string{g.Op("Mul", []string{acc, r}), gj})
		}
		for i := range branches {
			tj := g.Op("Gemm", []string{e, bj[i]}, graph.AttrInt("transB", 1))
			if r != "" {
				tj = g.Op("Add", []string{g.Op("Mul", []string{accT[i], r}), tj})
			}
			accT[i] = tj
		}
		lo0, hi0 := b.int0("slab_start", lo), b.int0("slab_end", hi)
		in := g.Op("And", []string{g.Op("GreaterOrEqual", []string{y, lo0}), g.Op("Less", []string{y, hi0})})
		at := g.Op("Where", []string{in, g.Op("Sub", []string{y, lo0}), b.int0("zero_label", 0)})
		ats, ins = append(ats, at), append(ins, in)
		pick := g.Op("Where", []string{in, g.Op("GatherElements", []string{s, at}, graph.AttrInt("axis", 1)), b.float0("zero", 0)})
		row := g.Op("Reshape", []string{g.Op("Gather", []string{wj, at}, graph.AttrInt("axis", 0)), g.Op("Concat", []string{b.ints("any_rows", -1), hidden}, graph.AttrInt("axis", 0))})
		row = g.Op("Where", []string{in, row, b.float0("zero", 0)})
		if picked != "" {
			pick = g.Op("Add", []string{picked, pick})
			row = g.Op("Add", []string{labelRows, row})
		}
		mx, se, picked, acc, labelRows = mj, ej, pick, gj, row
		after = g.Op("Mul", []string{g.Op("Mul", []string{dimOne(se, 1, unit), dimOne(picked, 1, unit)}), g.Op("Mul", []string{dimOne(acc, 1, hidden), dimOne(labelRows, 1, hidden)})})
		for i := range branches {
			after = g.Op("Mul", []string{after, dimOne(accT[i], 1, ranks[i])})
		}
	}
	lse := g.Op("Add", []string{mx, g.Op("Log", []string{se})})
	total := b.sumAll(g.Op("Mul", []string{w, g.Op("Sub", []string{lse, picked})}))
	grad := g.Op("Sub", []string{g.Op("Div", []string{acc, se}), labelRows})
	gh := g.Op("Reshape", []string{g.Op("Mul", []string{grad, c}), g.Op("Shape", []string{h})})
	stops = append(stops, gh)
	parts := []string{b.sumAll(g.Op("Mul", []string{h, gh}))}
	if len(branches) > 0 {
		// D = c·(A_t/L − Bᵀ_label): the label's column of B, any for an
		// ignored row (c is 0 there).
		y0 := g.Op("Reshape", []string{g.Op("Where", []string{g.Op("Equal", []string{y, b.int0("ignore_index", IgnoreIndex)}), b.int0("zero_label", 0), y}), b.ints("rows", -1)})
		for i, br := range branches {
			col := g.Op("Gather", []string{g.Op("Transpose", []string{bs[i]}, graph.AttrInts("perm", 1, 0)), y0}, graph.AttrInt("axis", 0))
			d := g.Op("Mul", []string{g.Op("Sub", []string{g.Op("Div", []string{accT[i], se}), col}), c})
			d = g.Op("Reshape", []string{d, g.Op("Shape", []string{br.t})})
			stops = append(stops, d)
			parts = append(parts, b.sumAll(g.Op("Mul", []string{br.t, d})))
		}
		// The second pass: E_j = tᵀ·(c·(exp(s_j − lse) − onehot_j)).
		es := make([][]string, len(branches))
		after = dimOne(lse, 1, unit)
		for j, lo := 0, int64(0); lo < N; j, lo = j+1, lo+step {
			hi := min(N, lo+step)
			_, _, s, err := slab(after, lo, hi)
			if err != nil {
				return "", err
			}
			p := g.Op("Exp", []string{g.Op("Sub", []string{s, lse})})
			pAt := g.Op("GatherElements", []string{p, ats[j]}, graph.AttrInt("axis", 1))
			inF := g.Op("Cast", []string{ins[j]}, graph.AttrInt("to", int64(dtype.Float32)))
			ds := g.Op("ScatterElements", []string{p, ats[j], g.Op("Sub", []string{pAt, inF})}, graph.AttrInt("axis", 1))
			ds = g.Op("Mul", []string{ds, c})
			after = ""
			for i := range branches {
				eij := g.Op("Gemm", []string{ts[i], ds}, graph.AttrInt("transA", 1))
				es[i] = append(es[i], eij)
				one := dimOne(eij, 0, ranks[i])
				if after != "" {
					one = g.Op("Mul", []string{after, one})
				}
				after = one
			}
		}
		for i, br := range branches {
			e := es[i][0]
			if len(es[i]) > 1 {
				e = g.Op("Concat", es[i], graph.AttrInt("axis", 1))
			}
			stops = append(stops, e)
			parts = append(parts, b.sumAll(g.Op("Mul", []string{br.b, e})))
		}
	}
	s := parts[0]
	if len(parts) > 1 {
		s = g.Op("Sum", parts)
	}
	detached := g.Op("Identity", []string{s})
	stops = append(stops, detached)
	autodiff.MarkStopGradient(m, stops...)
	return b.finish("Add", []string{g.Op("Div", []string{total, count}), g.Op("Sub", []string{s, detached})}), nil
}
