package autodiff

import (
	"math"

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

// inferMHA: the output [B, S, v_hidden] for 3-D query and value, and 4-D
// present key and value.
func inferMHA(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	s := unknownShape()
	v := f.in(n, 2).shape
	if x.shape.rank() == 3 && v.rank() == 3 {
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
// ops, for the layout that exporters such as the onnxruntime-genai model
// builder use: query, key and value of shape [B, S, H·D] (key and value
// may also come as [B, H, L, D]), an optional bias of the three
// projections, an optional key padding mask [B, T], an optional additive
// attention_bias [B|1, H|1, S, T], and past_key/past_value [B, H, P, D]
// that are joined in front of the new keys and values (present_key and
// present_value are the joined tensors).
//
//	out = concat_heads(softmax(scale·Q·Kᵀ + bias + mask)·V)
func decomposeMHA(e *emitter, n *onnxpb.NodeProto) {
	q, k, v := inputOr(n, 0), inputOr(n, 1), inputOr(n, 2)
	bias, kpm, ab := inputOr(n, 3), inputOr(n, 4), inputOr(n, 5)
	pk, pv := inputOr(n, 6), inputOr(n, 7)
	heads := graph.IntAttr(n, "num_heads", 0)
	switch {
	case heads <= 0:
		e.fail("num_heads must be positive")
		return
	case k == "" || v == "":
		e.fail("packed QKV is not supported: key and value must be inputs")
		return
	case inputOr(n, 8) != "" || inputOr(n, 9) != "":
		e.fail("past_sequence_length and cache_indirection (shared KV buffers, beam search) are not supported")
		return
	case graph.IntAttr(n, "unidirectional", 0) != 0:
		e.fail("unidirectional=1 is not supported: pass the causal mask as attention_bias")
		return
	case len(n.Output) > 3 && n.Output[3] != "":
		e.fail("the qk output is not supported")
		return
	case e.shape(q).rank() != 3:
		e.fail("query must have rank 3 (known), not %d", e.shape(q).rank())
		return
	}
	dt := e.typeOf(q)
	if bias != "" {
		hq, hk := e.dimOf(q, -1), e.dimOf(k, -1)
		hqk := e.addInts(hq, hk)
		end := e.addInts(hqk, e.dimOf(v, -1))
		q = e.add(q, e.op("Slice", []string{bias, e.ints(0), hq, e.ints(0)}))
		k = e.add(k, e.op("Slice", []string{bias, hq, hqk, e.ints(0)}))
		v = e.add(v, e.op("Slice", []string{bias, hqk, end, e.ints(0)}))
	}
	toHeads := func(x string) string {
		if e.shape(x).rank() == 4 {
			return x
		}
		return e.transpose(e.op("Reshape", []string{x, e.ints(0, 0, heads, -1)}), 0, 2, 1, 3)
	}
	qh, kh, vh := toHeads(q), toHeads(k), toHeads(v)
	if pk != "" {
		kh = e.op("Concat", []string{pk, kh}, graph.AttrInt("axis", 2))
	}
	if pv != "" {
		vh = e.op("Concat", []string{pv, vh}, graph.AttrInt("axis", 2))
	}
	var scale string
	if a := graph.Attr(n, "scale"); a != nil && a.F != 0 {
		scale = e.scalar(float64(a.F), dt)
	} else if hd := e.shape(q).dims[2]; hd.static() {
		scale = e.scalar(1/math.Sqrt(float64(hd.v/heads)), dt)
	} else {
		d := e.cast(e.op("Gather", []string{e.op("Shape", []string{qh}), e.int0(3)}), dt)
		scale = e.op("Reciprocal", []string{e.op("Sqrt", []string{d})})
	}
	scores := e.mul(e.op("MatMul", []string{qh, e.transpose(kh, 0, 1, 3, 2)}), scale)
	if ab != "" {
		scores = e.add(scores, ab)
	}
	if kpm != "" {
		if e.shape(kpm).rank() != 2 {
			e.fail("key_padding_mask must have shape [batch, total_sequence_length]")
			return
		}
		filter := float64(graph.FloatAttr(n, "mask_filter_value", -10000))
		masked := e.sub(e.scalar(1, dt), e.cast(kpm, dt))
		scores = e.add(scores, e.unsqueeze(e.mul(masked, e.scalar(filter, dt)), 1, 2))
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
