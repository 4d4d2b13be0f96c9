package autodiff

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Attention ops from com.microsoft (and RotaryEmbedding, also in the
// default domain from opset 23).

func init() {
	register("com.microsoft", "RotaryEmbedding", entry{grad: gradRotary(3), diff: []int{0}, infer: inferSame})
	register("", "RotaryEmbedding", entry{grad: gradRotary(2), diff: []int{0}, infer: inferSame})
	register("com.microsoft", "MultiHeadAttention", entry{decompose: decomposeMHA, infer: inferMHA})
}

// inferMHA: the output [B, S, v_hidden] for 3-D query and value (or a
// packed query [B, S, N, 3, H], or a packed key [B, L, N, 2, H]), and 4-D
// present key and value.
func inferMHA(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	s := unknownShape()
	v := f.in(n, 2).shape
	k := f.in(n, 1).shape
	heads := func(sh shape) dim {
		if sh.dims[2].static() && sh.dims[4].static() {
			return known(sh.dims[2].v * sh.dims[4].v)
		}
		return f.freshDim()
	}
	switch {
	case x.shape.rank() == 5:
		s = rankShape(x.shape.dims[0], x.shape.dims[1], heads(x.shape))
	case x.shape.rank() == 3 && k.rank() == 5:
		s = rankShape(x.shape.dims[0], x.shape.dims[1], heads(k))
	case x.shape.rank() == 3 && v.rank() == 3:
		s = rankShape(x.shape.dims[0], x.shape.dims[1], v.dims[2])
	}
	outs := []*tinfo{{elem: x.elem, shape: s}}
	for range n.Output[min(1, len(n.Output)):] {
		outs = append(outs, &tinfo{elem: x.elem, shape: rankShape(f.freshDim(), f.freshDim(), f.freshDim(), f.freshDim())})
	}
	return outs
}

// gradRotary: RoPE turns each pair of channels by an angle that depends
// on the position only. That is an orthogonal map, so its transpose turns
// by the opposite angle: the same op with the sine cache negated.
// sinIdx is the sine cache's input slot.
func gradRotary(sinIdx int) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		in := append([]string(nil), n.Input...)
		in[0] = dy[0]
		in[sinIdx] = e.neg(n.Input[sinIdx])
		gx := e.emit(n.Domain, n.OpType, in, 1, n.Attribute...)[0]
		e.inf.setShape(gx, e.shape(n.Input[0]))
		return []string{gx}
	}
}

// identityTo copies src into the value called dst.
func (e *emitter) identityTo(src, dst string) {
	e.b.At(e.scope).NodeTo("", "Identity", []string{src}, []string{dst})
	e.inf.record(dst, tinfo{elem: e.inf.get(src).elem, shape: e.inf.get(src).shape})
}

// decomposeMHA writes com.microsoft MultiHeadAttention out in standard
// ops, in each layout the spec gives: query [B, S, N·H] with key and value
// [B, L, N·H] (or, already split into heads, [B, N, L, H]); key and value
// packed into key [B, L, N, 2, H]; or query, key and value packed into
// query [B, S, N, 3, H]. An optional bias of the three projections
// ([3·N·H]) is added to each part; past_key and past_value [B, N, P, H]
// are joined in front of the new keys and values (present_key and
// present_value are the joined tensors).
//
//	out = concat_heads(softmax(scale·Q·Kᵀ + attention_bias + mask)·V)
//
// where mask is mask_filter_value (−10000 unless set) at each key that a
// query may not see: hidden by key_padding_mask in its [B] (valid
// lengths), [B, T] or [B, S, T] forms, or, with unidirectional, lying
// after the query (key j > P + i). The [3B+2] mask, past_sequence_length,
// cache_indirection and the qk output are refused.
func decomposeMHA(e *emitter, n *onnxpb.NodeProto) {
	q, k, v := inputOr(n, 0), inputOr(n, 1), inputOr(n, 2)
	bias, kpm, ab := inputOr(n, 3), inputOr(n, 4), inputOr(n, 5)
	pk, pv := inputOr(n, 6), inputOr(n, 7)
	heads := graph.IntAttr(n, "num_heads", 0)
	unidirectional := graph.IntAttr(n, "unidirectional", 0) == 1
	qs := e.shape(q)
	packedQKV := qs.rank() == 5
	packedKV := !packedQKV && e.shape(k).rank() == 5
	switch {
	case heads <= 0:
		e.fail("num_heads must be positive")
		return
	case packedQKV && (k != "" || v != ""):
		e.fail("a packed query [B, S, N, 3, H] comes without key and value")
		return
	case packedKV && v != "":
		e.fail("a packed key [B, L, N, 2, H] comes without value")
		return
	case !packedQKV && !packedKV && (k == "" || v == ""):
		e.fail("key and value must be inputs unless query (rank 5) or key (rank 5) is packed")
		return
	case inputOr(n, 8) != "" || inputOr(n, 9) != "":
		e.fail("past_sequence_length and cache_indirection (shared KV buffers, beam search) are not supported")
		return
	case len(n.Output) > 3 && n.Output[3] != "":
		e.fail("the qk output is not supported")
		return
	case !packedQKV && qs.rank() != 3:
		e.fail("query must have rank 3 or 5 (known), not %d", qs.rank())
		return
	}
	dt := e.typeOf(q)
	toHeads := func(x string) string {
		if e.shape(x).rank() == 4 {
			return x
		}
		return e.transpose(e.op("Reshape", []string{x, e.ints(0, 0, heads, -1)}), 0, 2, 1, 3)
	}
	// part returns slot i of a packed tensor [B, L, N, c, H] in heads form.
	part := func(x string, i int64) string {
		return e.transpose(e.op("Gather", []string{x, e.int0(i)}, graph.AttrInt("axis", 3)), 0, 2, 1, 3)
	}
	var qh, kh, vh string
	switch {
	case packedQKV:
		qh, kh, vh = part(q, 0), part(q, 1), part(q, 2)
	case packedKV:
		qh, kh, vh = toHeads(q), part(k, 0), part(k, 1)
	}
	if bias != "" {
		if packedQKV || packedKV {
			// Each third of the bias, as [N, 1, H], on the heads.
			hidden := e.dimOf(bias, 0)
			third := e.op("Div", []string{hidden, e.ints(3)})
			at := func(x string, i int64) string {
				lo := e.op("Mul", []string{third, e.ints(i)})
				b := e.op("Slice", []string{bias, lo, e.addInts(lo, third), e.ints(0)})
				return e.add(x, e.op("Reshape", []string{b, e.ints(heads, 1, -1)}))
			}
			qh, kh, vh = at(qh, 0), at(kh, 1), at(vh, 2)
		} else {
			hq, hk := e.dimOf(q, -1), e.dimOf(k, -1)
			hqk := e.addInts(hq, hk)
			end := e.addInts(hqk, e.dimOf(v, -1))
			q = e.add(q, e.op("Slice", []string{bias, e.ints(0), hq, e.ints(0)}))
			k = e.add(k, e.op("Slice", []string{bias, hq, hqk, e.ints(0)}))
			v = e.add(v, e.op("Slice", []string{bias, hqk, end, e.ints(0)}))
		}
	}
	if !packedQKV && !packedKV {
		qh, kh, vh = toHeads(q), toHeads(k), toHeads(v)
	}
	if pk != "" {
		kh = e.op("Concat", []string{pk, kh}, graph.AttrInt("axis", 2))
	}
	if pv != "" {
		vh = e.op("Concat", []string{pv, vh}, graph.AttrInt("axis", 2))
	}
	scale := attentionScale(e, n, qh, dt)
	scores := e.mul(e.op("MatMul", []string{qh, e.transpose(kh, 0, 1, 3, 2)}), scale)
	if ab != "" {
		scores = e.add(scores, ab)
	}
	var keyIdx, allowed string
	if kpm != "" || unidirectional {
		keyIdx = e.op("Range", []string{e.int0(0), e.squeeze(e.dimOf(kh, 2), 0), e.int0(1)}) // [T]
	}
	if kpm != "" {
		allowed = e.keyMask(n, kpm, qh, keyIdx)
		if e.err != nil {
			return
		}
	}
	if unidirectional {
		pastLen := e.ints(0)
		if pk != "" {
			pastLen = e.dimOf(pk, 2)
		}
		steps := e.op("Range", []string{e.int0(0), e.squeeze(e.dimOf(qh, 2), 0), e.int0(1)})
		causal := e.unsqueeze(e.op("LessOrEqual", []string{keyIdx, e.unsqueeze(e.add(steps, pastLen), 1)}), 0, 1)
		if allowed == "" {
			allowed = causal
		} else {
			allowed = e.op("And", []string{allowed, causal})
		}
	}
	if allowed != "" {
		filter := float64(graph.FloatAttr(n, "mask_filter_value", -10000))
		scores = e.add(scores, e.op("Where", []string{allowed, e.scalar(0, dt), e.scalar(filter, dt)}))
	}
	probs := e.op("Softmax", []string{scores}, graph.AttrInt("axis", 3))
	ctx := e.transpose(e.op("MatMul", []string{probs, vh}), 0, 2, 1, 3)
	e.identityTo(e.op("Reshape", []string{ctx, e.ints(0, 0, -1)}), n.Output[0])
	if len(n.Output) > 1 && n.Output[1] != "" {
		e.identityTo(kh, n.Output[1])
	}
	if len(n.Output) > 2 && n.Output[2] != "" {
		e.identityTo(vh, n.Output[2])
	}
}

// attentionScale returns the factor of an attention node n's scores in
// type dt: its scale attribute where set and not 0, else 1/√head_dim with
// head_dim the last axis of qh [batch, heads, seq, head_dim], a constant
// where the shape is known.
func attentionScale(e *emitter, n *onnxpb.NodeProto, qh string, dt dtype.Type) string {
	if a := graph.Attr(n, "scale"); a != nil && a.F != 0 {
		return e.scalar(float64(a.F), dt)
	}
	if sh := e.shape(qh); sh.rank() == 4 && sh.dims[3].static() {
		return e.scalar(1/math.Sqrt(float64(sh.dims[3].v)), dt)
	}
	d := e.cast(e.squeeze(e.dimOf(qh, 3), 0), dt)
	return e.op("Reciprocal", []string{e.op("Sqrt", []string{d})})
}
