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
// (MatMulNBits node n, without LoRA on it or a bias) against labels
// [batch, seq] (already aligned: IgnoreIndex where a position scores
// nothing), over all rows of h [batch, seq, hidden] at once and the
// vocabulary a slab of rows of Wᵀ at a time, in one pass: the head is
// dequantized once a step, not twice a chunk, and no [rows, vocab]
// tensor is ever whole.
//
// For each slab j, each after the one before: s_j = h·W_jᵀ [rows, slab];
// M′ = max(M, max s_j) per row, r = exp(M − M′) (≤ 1), e_j = exp(s_j −
// M′); and, as log-sum-exp combines,
//
//	L ← L·r + Σ e_j,  A ← A·r + e_j·W_j,  M ← M′,
//
// so that at the end lse = M + log L and A / L = softmax·W, the
// gradient's softmax part, [rows, hidden]; and the label's score s_label
// and the label's row of W, where the label falls in the slab, summed.
// The loss is Σ w·(lse − s_label) / count, w 0 for an ignored row, and
// its gradient with respect to h is G = c·(A/L − W_label), c = w / count,
// which the loss hands on as chunkedCausalLM does (S − S′, S = Σ h ⊙ G,
// S′ detached, the h that the slabs read detached).
//
// Each slab waits for the one before by a 1 read from that slab's last
// values, so that ONNX Runtime holds one slab's scores and weight at a
// time and can neither fold the dequantized weight into an initializer
// nor run it early.
func slabbedCausalLM(b *lossGraph, n *onnxpb.NodeProto, h, labels string) (string, error) {
	g := b.g
	m := g.Model()
	l, err := quant.LayoutOf(n)
	if err != nil {
		return "", errorf("%s: LM head: %v", b.name, err)
	}
	N, K := int64(l.N), int64(l.K)
	step := max(1, min(N, headSlabElems/K))
	hd := g.Op("Identity", []string{h})
	hidden := g.Op("Slice", []string{g.Op("Shape", []string{h}), b.ints("hidden_start", 2), b.ints("hidden_end", 3)})
	x := g.Op("Reshape", []string{hd, g.Op("Concat", []string{b.ints("any_rows", -1), hidden}, graph.AttrInt("axis", 0))}) // [rows, hidden]
	y := g.Op("Reshape", []string{labels, b.ints("rows_by_one", -1, 1)})                                                   // [rows, 1]
	w := g.Op("Cast", []string{g.Op("Not", []string{g.Op("Equal", []string{y, b.int0("ignore_index", IgnoreIndex)})})}, graph.AttrInt("to", int64(dtype.Float32)))
	count := g.Op("Max", []string{b.sumAll(w), b.float0("one", 1)})
	// widthOne is 1 read from v [rows, width]: a data dependency on v.
	widthOne := func(v, width string) string {
		return g.Op("Div", []string{g.Op("Slice", []string{g.Op("Shape", []string{v}), b.ints("width_start", 1), b.ints("width_end", 2)}), width})
	}
	unit := b.ints("unit", 1)
	rowMax := func(s string) string {
		if b.opset >= 18 {
			return g.Op("ReduceMax", []string{s, unit}, graph.AttrInt("keepdims", 1))
		}
		return g.Op("ReduceMax", []string{s}, graph.AttrInts("axes", 1), graph.AttrInt("keepdims", 1))
	}
	rowSum := func(s string) string { return g.Op("ReduceSum", []string{s, unit}, graph.AttrInt("keepdims", 1)) }
	slab := func(after string, lo, hi int64) (wj, s string, err error) {
		wj, err = autodiff.DequantizeNBitsRows(m, n, after, lo, hi, g.Scope()+"/head")
		if err != nil {
			return "", "", errorf("%s: LM head: %v", b.name, err)
		}
		return wj, g.Op("Gemm", []string{x, wj}, graph.AttrInt("transB", 1)), nil
	}
	after := widthOne(x, hidden)
	var mx, se, picked, acc, labelRows string
	for lo := int64(0); lo < N; lo += step {
		hi := min(N, lo+step)
		wj, s, err := slab(after, lo, hi)
		if err != nil {
			return "", err
		}
		mj := rowMax(s)
		if mx != "" {
			mj = g.Op("Max", []string{mx, mj})
		}
		e := g.Op("Exp", []string{g.Op("Sub", []string{s, mj})})
		ej, gj := rowSum(e), g.Op("MatMul", []string{e, wj})
		if mx != "" {
			r := g.Op("Exp", []string{g.Op("Sub", []string{mx, mj})})
			ej = g.Op("Add", []string{g.Op("Mul", []string{se, r}), ej})
			gj = g.Op("Add", []string{g.Op("Mul", []string{acc, r}), gj})
		}
		lo0, hi0 := b.int0("slab_start", lo), b.int0("slab_end", hi)
		in := g.Op("And", []string{g.Op("GreaterOrEqual", []string{y, lo0}), g.Op("Less", []string{y, hi0})})
		at := g.Op("Where", []string{in, g.Op("Sub", []string{y, lo0}), b.int0("zero_label", 0)})
		pick := g.Op("Where", []string{in, g.Op("GatherElements", []string{s, at}, graph.AttrInt("axis", 1)), b.float0("zero", 0)})
		row := g.Op("Reshape", []string{g.Op("Gather", []string{wj, at}, graph.AttrInt("axis", 0)), g.Op("Concat", []string{b.ints("any_rows", -1), hidden}, graph.AttrInt("axis", 0))})
		row = g.Op("Where", []string{in, row, b.float0("zero", 0)})
		if picked != "" {
			pick = g.Op("Add", []string{picked, pick})
			row = g.Op("Add", []string{labelRows, row})
		}
		mx, se, picked, acc, labelRows = mj, ej, pick, gj, row
		after = g.Op("Mul", []string{g.Op("Mul", []string{widthOne(se, unit), widthOne(picked, unit)}), g.Op("Mul", []string{widthOne(acc, hidden), widthOne(labelRows, hidden)})})
	}
	lse := g.Op("Add", []string{mx, g.Op("Log", []string{se})})
	total := b.sumAll(g.Op("Mul", []string{w, g.Op("Sub", []string{lse, picked})}))
	grad := g.Op("Sub", []string{g.Op("Div", []string{acc, se}), labelRows})
	gh := g.Op("Reshape", []string{g.Op("Mul", []string{grad, g.Op("Div", []string{w, count})}), g.Op("Shape", []string{h})})
	s := b.sumAll(g.Op("Mul", []string{h, gh}))
	detached := g.Op("Identity", []string{s})
	autodiff.MarkStopGradient(m, hd, gh, detached)
	return b.finish("Add", []string{g.Op("Div", []string{total, count}), g.Op("Sub", []string{s, detached})}), nil
}
