package train

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// minChunkedOpset is the oldest default-domain opset of the chunked loss:
// ScatterElements replaces from 11, Flatten and Slice with inputs are
// older; 13 is where Split, Squeeze and friends settled, and what the
// chunked loss is tested on.
const minChunkedOpset = 13

// chunkedCausalLM appends the causal-LM loss over an LM head, chunk by
// chunk over the sequence, so that no [batch, seq, vocab] tensor is whole,
// forward or backward. logits, declared float32 [batch, seq, vocab], must
// be h·W by an LM head that headOf recognizes (a float32 or an int4 one),
// plus the LoRA branches t·B on it that headOf peels off; ok is false, and
// m unchanged, when they are not (the caller then appends the whole
// loss).
//
// Each chunk k of ⌈seq/chunks⌉ positions computes its logits h_k·W (+
// t_k·B for each branch), its summed cross entropy, and at once its share
// of the loss's gradient with respect to h, G_k = c·dscores_k·Wᵀ with
// dscores_k = softmax − onehot and c = 1/count, the gradient the whole
// loss's backward pass would compute for those rows; its logits then die.
// The loss is
//
//	Σ_k total_k / count + (S − S′),  S = Σ_k Σ h_k ⊙ G_k,  S′ = S detached,
//
// whose value is Σ_k total_k / count (S − S′ is exactly 0) and whose
// gradient with respect to h is G: the h_k that the head multiplies, the
// G_k and S′ are marked as constants for package autodiff
// (autodiff.StopGradientKey). Where W
// itself trains (full fine-tuning), its gradient flows through the
// chunks' logits, which are then kept.
//
// A LoRA branch on the head, t·B with t = s·dropout(h)·A [batch, seq, r]
// as the injected graph computes it (whole: it is rank-wide, not
// vocabulary-wide), adds two terms to S, by the same trick:
//
//	Σ_k Σ t_k ⊙ D_k,  D_k = c·dscores_k·Bᵀ,  and  Σ B ⊙ E,  E = Σ_k c·t_kᵀ·dscores_k,
//
// D_k and E detached, and the chunks' scores read t and B detached: t's
// gradient is D, which autodiff carries back through the graph's own
// scaling, A and dropout (the same mask as the forward pass, so dropout
// needs nothing of its own), to A and to h; and B's gradient is E, the
// whole loss's. E sums the chunks' [r, vocab] shares as they come.
//
// An int4 head without a bias, with or without LoRA branches on it, is
// not chunked over the sequence: its loss is slabbedCausalLM's, over all
// rows at once and the vocabulary a slab at a time, which dequantizes the
// head once a step (twice with branches) rather than twice a chunk.
func chunkedCausalLM(b *lossGraph, logits, labels string, chunks int) (string, bool, error) {
	m := b.g.Model()
	head := m.Producer(logits)
	if head == nil || b.opset < minChunkedOpset || b.rank != 3 || !b.isFloat32(logits) {
		return "", false, nil
	}
	lm, ok := headOf(b, head)
	if !ok {
		return "", false, nil
	}
	h := lm.h
	if lm.nbits != nil {
		loss, err := slabbedCausalLM(b, lm.nbits, lm.branches, h, labels)
		return loss, err == nil, err
	}
	g := b.g
	valid := g.Op("Not", []string{g.Op("Equal", []string{labels, b.int0("ignore_index", IgnoreIndex)})})
	count := g.Op("Max", []string{b.sumAll(g.Op("Cast", []string{valid}, graph.AttrInt("to", int64(dtype.Float32)))), b.float0("one", 1)})
	inv := g.Op("Div", []string{b.float0("one", 1), count})
	// ⌈seq / chunks⌉ positions a chunk. A chunk past the end (a sequence
	// shorter than chunks) is the last position again, with no labels:
	// ONNX Runtime fails on some empty products.
	seq := g.Op("Slice", []string{g.Op("Shape", []string{h}), b.ints("seq_start", 1), b.ints("seq_end", 2)})
	last := g.Op("Sub", []string{seq, b.ints("one_position", 1)})
	step := g.Op("Div", []string{g.Op("Add", []string{seq, b.ints("chunks_minus_one", int64(chunks-1))}), b.ints("chunks", int64(chunks))})
	axis := b.ints("seq_axis", 1)
	hidden := g.Op("Slice", []string{g.Op("Shape", []string{h}), b.ints("hidden_start", 2), b.ints("hidden_end", 3)})
	var totals, parts, stops []string
	// The branches' t and B as the chunks' scores read them: detached.
	// rank is each t's last dimension, r.
	var tDetached, bDetached, ranks, es []string
	for _, br := range lm.branches {
		tDetached = append(tDetached, g.Op("Identity", []string{br.t}))
		bDetached = append(bDetached, g.Op("Identity", []string{br.b}))
		ranks = append(ranks, g.Op("Slice", []string{g.Op("Shape", []string{br.t}), b.ints("rank_start", 2), b.ints("rank_end", 3)}))
		es = append(es, "")
	}
	stops = append(stops, tDetached...)
	stops = append(stops, bDetached...)
	// one is 1, read from dim axis of v over like, the same size: a data
	// dependency on v.
	one := func(v string, axis int64, like string) string {
		dim := g.Op("Slice", []string{g.Op("Shape", []string{v}), b.ints("dim_start", axis), b.ints("dim_end", axis+1)})
		return g.Op("Div", []string{dim, like})
	}
	var prev []string // ones from the chunk before's G_k, D_k and E
	for k := range chunks {
		from := g.Op("Mul", []string{step, b.ints("chunk_start", int64(k))})
		for _, o := range prev {
			// Times 1 read from each value that the chunk before makes of
			// its scores: this chunk starts once that one is done, so that
			// ONNX Runtime never holds the scores (or an int4 head's
			// dequantized slabs) of two chunks at once.
			from = g.Op("Mul", []string{from, o})
		}
		prev = prev[:0]
		live := g.Op("Less", []string{from, seq})
		start := g.Op("Min", []string{from, last})
		end := g.Op("Max", []string{g.Op("Min", []string{g.Op("Add", []string{from, step}), seq}), g.Op("Add", []string{start, b.ints("one_position", 1)})})
		chunk := func(x string) string { return g.Op("Slice", []string{x, start, end, axis}) }
		hk := chunk(h)
		stops = append(stops, hk)
		yk := g.Op("Reshape", []string{g.Op("Where", []string{live, chunk(labels), b.int0("ignore_index", IgnoreIndex)}), b.ints("rows", -1)})
		wk := g.Op("Cast", []string{g.Op("Not", []string{g.Op("Equal", []string{yk, b.int0("ignore_index", IgnoreIndex)})})}, graph.AttrInt("to", int64(dtype.Float32)))
		scores, err := lm.scores(g.Op("Reshape", []string{hk, g.Op("Concat", []string{b.ints("any_rows", -1), hidden}, graph.AttrInt("axis", 0))}))
		if err != nil {
			return "", false, errorf("%s: LM head: %v", b.name, err)
		}
		// Each branch's t_k·B, added by Gemm's C: [rows, r] by [r, vocab].
		tks := make([]string, len(lm.branches))
		for i := range lm.branches {
			tks[i] = g.Op("Reshape", []string{chunk(tDetached[i]), g.Op("Concat", []string{b.ints("any_rows", -1), ranks[i]}, graph.AttrInt("axis", 0))})
			scores = g.Op("Gemm", []string{tks[i], bDetached[i], scores})
		}
		// Log probabilities, and each row's at its label (any class for an
		// ignored row, whose weight is 0): the one value that both the
		// loss and its gradient read, so that the [rows, vocab] values
		// die with this chunk. (SoftmaxCrossEntropyLoss would give the
		// summed loss as a second output of the node that makes them, and
		// ONNX Runtime runs the loss sums after the last chunk, holding
		// every chunk's log probabilities until then.)
		logp := g.Op("LogSoftmax", []string{scores}, graph.AttrInt("axis", 1))
		at := b.unsqueeze(g.Op("Where", []string{g.Op("Equal", []string{yk, b.int0("ignore_index", IgnoreIndex)}), b.int0("zero_label", 0), yk}), 1)
		logpAt := g.Op("GatherElements", []string{logp, at}, graph.AttrInt("axis", 1))
		wk1 := b.unsqueeze(wk, 1)
		totals = append(totals, g.Op("Neg", []string{b.sumAll(g.Op("Mul", []string{logpAt, wk1}))}))
		// The gradient of total_k / count with respect to the chunk's
		// rows: c·(softmax − onehot)·Wᵀ, c = w/count per row, applied to
		// the [rows, hidden] product rather than to the [rows, vocab]
		// probabilities.
		c := g.Op("Mul", []string{wk1, inv})
		p := g.Op("Exp", []string{logp})
		pAt := g.Op("Exp", []string{logpAt})
		dscores := g.Op("ScatterElements", []string{p, at, g.Op("Sub", []string{pAt, b.float0("one", 1)})}, graph.AttrInt("axis", 1))
		dp, err := lm.timesWT(dscores)
		if err != nil {
			return "", false, errorf("%s: LM head: %v", b.name, err)
		}
		dh := g.Op("Mul", []string{dp, c})
		rows := g.Op("Slice", []string{g.Op("Shape", []string{hk}), b.ints("batch_start", 0), b.ints("batch_end", 2)})
		gk := g.Op("Reshape", []string{dh, g.Op("Concat", []string{rows, hidden}, graph.AttrInt("axis", 0))})
		stops = append(stops, gk)
		prev = append(prev, one(gk, 2, hidden))
		// h ⊙ G over this chunk, through a slice of h that is not
		// detached: its gradient is G_k.
		parts = append(parts, b.sumAll(g.Op("Mul", []string{chunk(h), gk})))
		for i, br := range lm.branches {
			// t's gradient, D_k = c·dscores_k·Bᵀ, through a slice of t
			// that is not detached; and B's share, c·t_kᵀ·dscores_k,
			// added to E.
			dt := g.Op("Mul", []string{g.Op("Gemm", []string{dscores, bDetached[i]}, graph.AttrInt("transB", 1)), c})
			dk := g.Op("Reshape", []string{dt, g.Op("Concat", []string{rows, ranks[i]}, graph.AttrInt("axis", 0))})
			stops = append(stops, dk)
			parts = append(parts, b.sumAll(g.Op("Mul", []string{chunk(br.t), dk})))
			ek := g.Op("Gemm", []string{g.Op("Mul", []string{tks[i], c}), dscores}, graph.AttrInt("transA", 1))
			if es[i] != "" {
				ek = g.Op("Add", []string{es[i], ek})
			}
			es[i] = ek
			prev = append(prev, one(dk, 2, ranks[i]), one(ek, 0, ranks[i]))
		}
	}
	for i, br := range lm.branches {
		stops = append(stops, es[i])
		parts = append(parts, b.sumAll(g.Op("Mul", []string{br.b, es[i]})))
	}
	sum := func(v []string) string {
		if len(v) == 1 {
			return v[0]
		}
		return g.Op("Sum", v)
	}
	total, s := sum(totals), sum(parts)
	detached := g.Op("Identity", []string{s})
	stops = append(stops, detached)
	autodiff.MarkStopGradient(m, stops...)
	return b.finish("Add", []string{g.Op("Div", []string{total, count}), g.Op("Sub", []string{s, detached})}), true, nil
}

// lmHead is an LM head that the chunked loss can compute chunk by chunk.
type lmHead struct {
	h string // the hidden states, [batch, seq, hidden]
	// scores appends the head's product of rows, [rows, hidden] from h:
	// the [rows, vocab] scores.
	scores func(rows string) (string, error)
	// timesWT appends dscores·Wᵀ, dscores [rows, vocab]: the gradient of
	// the rows.
	timesWT func(dscores string) (string, error)
	// branches are the LoRA branches that the logits add to h·W.
	branches []loraBranch
	// nbits is an int4 head's MatMulNBits node, without a bias: its loss
	// (with its branches) is slabbedCausalLM's.
	nbits *onnxpb.NodeProto
}

// loraBranch is a low-rank term t·B of the logits: t [batch, seq, r], the
// branch as the graph computes it up to its last factor, and B [r, vocab],
// a float32 initializer (LoRA's lora_B, which trains).
type loraBranch struct{ t, b string }

// headOf recognizes the LM head that head, the producer of the logits,
// is: MatMul(h, W) of h by a 2-D float32 initializer W, or a
// com.microsoft MatMulNBits node whose packed weight, scales and zero
// points are initializers (an int4 head, frozen), without g_idx. A float
// head's products are a MatMul and a Gemm reading W. An int4 head's are
// computed as MatMulNBits' backward rule computes dscores·Wᵀ: the weight
// dequantized a slab of vocab rows at a time (autodiff.TimesNBits and
// TimesTransposedNBits), so that no float copy of it is ever whole, and
// no MatMulNBits node a chunk has ONNX Runtime keep a pre-packed copy of
// the weight for each.
//
// An Add of such a head's product (or of an Add that headOf recognizes,
// for stacked branches) and of a MatMul of a float32 value by a 2-D
// float32 initializer B is that head with a LoRA branch t·B: plain LoRA
// as rewrite.InjectLoRA adds it, Add(h·W, (s·dropout(h)·A)·B), on either
// head. DoRA on the head is not: its magnitude rescales the head's own
// product and the branch by a norm of W + s·A·B (rewrite/dora.go), which
// is no sum of a head's product and t·B, so headOf does not recognize it
// and the whole loss is used.
//
// ok is false, and nothing is appended, for any other head.
func headOf(b *lossGraph, head *onnxpb.NodeProto) (lmHead, bool) {
	m, g := b.g.Model(), b.g
	switch {
	case head.OpType == "Add" && head.Domain == "" && len(head.Input) == 2:
		// InjectLoRA's Add(base, branch) first.
		for _, i := range []int{1, 0} {
			br, ok := branchOf(m, head.Input[i])
			base := m.Producer(head.Input[1-i])
			if !ok || base == nil {
				continue
			}
			if lm, ok := headOf(b, base); ok {
				lm.branches = append(lm.branches, br)
				return lm, true
			}
		}
	case head.OpType == "MatMul" && head.Domain == "" && len(head.Input) == 2:
		w := head.Input[1]
		wt := m.Initializer(w)
		if wt == nil || graph.TypeOf(wt) != dtype.Float32 || len(wt.Dims) != 2 {
			return lmHead{}, false
		}
		return lmHead{
			h:      head.Input[0],
			scores: func(rows string) (string, error) { return g.Op("MatMul", []string{rows, w}), nil },
			timesWT: func(d string) (string, error) {
				return g.Op("Gemm", []string{d, w}, graph.AttrInt("transB", 1)), nil
			},
		}, true
	case quant.IsNode(head):
		if _, err := quant.LayoutOf(head); err != nil || len(head.Input) <= quant.InputScales {
			return lmHead{}, false
		}
		for i, in := range head.Input {
			switch {
			case in == "" || i == quant.InputA || i == quant.InputBias:
			case i == quant.InputGIdx || m.Initializer(in) == nil:
				return lmHead{}, false
			}
		}
		var nbits *onnxpb.NodeProto
		if len(head.Input) <= quant.InputBias || head.Input[quant.InputBias] == "" {
			nbits = head
		}
		return lmHead{
			h:     head.Input[quant.InputA],
			nbits: nbits,
			scores: func(rows string) (string, error) {
				return autodiff.TimesNBits(m, head, rows, g.Scope()+"/head")
			},
			timesWT: func(d string) (string, error) {
				return autodiff.TimesTransposedNBits(m, head, d, g.Scope()+"/head_grad")
			},
		}, true
	}
	return lmHead{}, false
}

// branchOf recognizes v as a LoRA branch's last product, MatMul(t, B) with
// B a 2-D float32 initializer.
func branchOf(m *graph.Model, v string) (loraBranch, bool) {
	p := m.Producer(v)
	if p == nil || p.OpType != "MatMul" || p.Domain != "" || len(p.Input) != 2 {
		return loraBranch{}, false
	}
	w := m.Initializer(p.Input[1])
	if w == nil || graph.TypeOf(w) != dtype.Float32 || len(w.Dims) != 2 {
		return loraBranch{}, false
	}
	return loraBranch{t: p.Input[0], b: p.Input[1]}, true
}
