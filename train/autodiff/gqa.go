package autodiff

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// com.microsoft GroupQueryAttention, the attention of the onnxruntime-genai
// model builder's decoders, differentiated through an exact decomposition
// into standard ops.

func init() {
	register("com.microsoft", "GroupQueryAttention", entry{decompose: decomposeGQA, infer: inferGQA})
}

// inferGQA: the output [batch, seq, heads·head_dim], and present_key and
// present_value [batch, kv_heads, total, head_dim].
func inferGQA(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	q := f.in(n, 0)
	heads := graph.IntAttr(n, "num_heads", 0)
	kvHeads := graph.IntAttr(n, "kv_num_heads", 0)
	out := unknownShape()
	headDim := f.freshDim()
	if q.shape.rank() == 3 {
		hidden := q.shape.dims[2]
		switch {
		case inputOr(n, 1) != "":
			if hidden.static() && heads > 0 {
				headDim = known(hidden.v / heads)
			}
		case hidden.static() && heads+2*kvHeads > 0:
			headDim = known(hidden.v / (heads + 2*kvHeads))
			hidden = known(headDim.v * heads)
		default:
			hidden = f.freshDim()
		}
		out = rankShape(q.shape.dims[0], q.shape.dims[1], hidden)
	}
	outs := []*tinfo{{elem: q.elem, shape: out}}
	for range n.Output[min(1, len(n.Output)):] {
		b := f.freshDim()
		if q.shape.rank() == 3 {
			b = q.shape.dims[0]
		}
		outs = append(outs, &tinfo{elem: q.elem, shape: rankShape(b, known(kvHeads), f.freshDim(), headDim)})
	}
	return outs
}

// decomposeGQA writes GroupQueryAttention out in standard ops, as ONNX
// Runtime's CPU kernel computes it. For query [B, S, ·] and past_key
// [B, KV, P, D]:
//
//   - q, k and v come from query, key and value, or all three from a
//     packed query [B, S, (H + 2·KV)·D].
//   - Each row b is total_b = seqlens_k[b] + 1 long, of which its past is
//     past_b: 0 in the first prompt (S > 1 and S = total_sequence_length),
//     total_b − S otherwise. Where the kernel refuses to run (batch > 1
//     with a past and S > 1, as prefix tuning trains), past_b is P: the
//     whole past is valid and the new tokens are padded on the right.
//   - With do_rotary, q and the new k are turned by cos_cache and
//     sin_cache (the first 2·cos_cache.dim1 channels of each head,
//     interleaved or by halves) at positions past_b + s, or 1 from the
//     row's end on.
//   - Keys and values are the past joined with the new ones (the present
//     outputs). Query s of row b sees past key j when j < past_b and new
//     key t when t ≤ s (causal); with local_window_size W only the W
//     keys up to the query's own position past_b + s (what ONNX Runtime
//     1.24's kernel keeps).
//   - scores = scale·q·kᵀ (scale 1/√D unless set), softcap·tanh(·/softcap)
//     where softcap is set, plus attention_bias; softmax over the keys
//     seen, with an extra logit of head_sink[h] (or 0, smooth_softmax)
//     in the denominator; then ·v, heads joined. A float16 op computes
//     scores and softmax in float32, as the kernel does.
//
// present_key and present_value are past and new joined: what the kernel
// writes when every row's past is the whole past_key (no shared buffer).
func decomposeGQA(e *emitter, n *onnxpb.NodeProto) {
	q, k, v := inputOr(n, 0), inputOr(n, 1), inputOr(n, 2)
	pk, pv := inputOr(n, 3), inputOr(n, 4)
	seqlens, total := inputOr(n, 5), inputOr(n, 6)
	cosCache, sinCache := inputOr(n, 7), inputOr(n, 8)
	bias, sink := inputOr(n, 10), inputOr(n, 11)
	heads := graph.IntAttr(n, "num_heads", 0)
	kvHeads := graph.IntAttr(n, "kv_num_heads", 0)
	window := graph.IntAttr(n, "local_window_size", -1)
	softcap := float64(graph.FloatAttr(n, "softcap", 0))
	rotary := graph.IntAttr(n, "do_rotary", 0) == 1
	causal := graph.IntAttr(n, "causal", 1) == 1
	smooth := graph.IntAttr(n, "smooth_softmax", 0) == 1
	for i := 12; i < len(n.Input); i++ {
		if n.Input[i] != "" {
			e.fail("input %d (k_scale, v_scale, q_norm_weight, k_norm_weight: a quantized KV cache or fused Q/K norms) is not supported", i)
			return
		}
	}
	switch {
	case heads <= 0 || kvHeads <= 0 || heads%kvHeads != 0:
		e.fail("num_heads %d must be a positive multiple of kv_num_heads %d", heads, kvHeads)
		return
	case (k == "") != (v == ""):
		e.fail("key and value must be given together, or neither (packed QKV)")
		return
	case (pk == "") != (pv == ""):
		e.fail("past_key and past_value must be given together")
		return
	case seqlens == "" || total == "":
		e.fail("seqlens_k and total_sequence_length are required")
		return
	case inputOr(n, 9) != "":
		e.fail("the position_ids input is not supported: positions follow from seqlens_k")
		return
	case rotary && (cosCache == "" || sinCache == ""):
		e.fail("do_rotary needs cos_cache and sin_cache")
		return
	case graph.IntAttr(n, "qk_output", 0) != 0 || (len(n.Output) > 3 && n.Output[3] != ""):
		e.fail("the output_qk output is not supported")
		return
	case graph.IntAttr(n, "sliding_window_cache", 0) != 0:
		e.fail("sliding_window_cache (a window-sized KV buffer) is not supported")
		return
	case graph.IntAttr(n, "kv_cache_bit_width", 0) != 0 || quantType(n, "k_quant_type") || quantType(n, "v_quant_type"):
		e.fail("a quantized KV cache is not supported")
		return
	case e.shape(q).rank() != 3:
		e.fail("query must have rank 3 (known), not %d", e.shape(q).rank())
		return
	}
	dt := e.typeOf(q)

	// Heads: [B, n, S, D].
	var qh, kh, vh string
	if k == "" {
		x := e.op("Reshape", []string{q, e.ints(0, 0, heads+2*kvHeads, -1)})
		parts := e.split(x, 2, heads, kvHeads, kvHeads)
		qh, kh, vh = e.transpose(parts[0], 0, 2, 1, 3), e.transpose(parts[1], 0, 2, 1, 3), e.transpose(parts[2], 0, 2, 1, 3)
	} else {
		toHeads := func(x string, h int64) string {
			return e.transpose(e.op("Reshape", []string{x, e.ints(0, 0, h, -1)}), 0, 2, 1, 3)
		}
		qh, kh, vh = toHeads(q, heads), toHeads(k, kvHeads), toHeads(v, kvHeads)
	}

	// Lengths, int64: S [1], total_b [B], past_b [B], P [1].
	seqLen := e.dimOf(q, 1)
	totalB := e.add(e.cast(seqlens, dtype.Int64), e.ints(1))
	past := e.ints(0)
	if pk != "" {
		past = e.dimOf(pk, 2)
	}
	first := e.op("And", []string{
		e.op("Greater", []string{seqLen, e.ints(1)}),
		e.op("Equal", []string{seqLen, e.cast(e.op("Reshape", []string{total, e.ints(1)}), dtype.Int64)}),
	})
	pastB := e.sub(totalB, seqLen)
	if pk != "" {
		// Batch > 1, a past and S > 1: the whole past, new tokens padded on the right.
		refused := e.op("And", []string{
			e.op("And", []string{e.op("Greater", []string{e.dimOf(q, 0), e.ints(1)}), e.op("Greater", []string{seqLen, e.ints(1)})}),
			e.op("Greater", []string{past, e.ints(0)}),
		})
		pastB = e.op("Where", []string{refused, past, pastB})
	}
	pastB = e.op("Where", []string{first, e.ints(0), pastB})
	steps := e.op("Range", []string{e.int0(0), e.squeeze(seqLen, 0), e.int0(1)}) // [S]
	absPos := e.add(e.unsqueeze(pastB, 1), steps)                                // [B, S]

	if rotary {
		pos := e.op("Where", []string{e.op("Less", []string{absPos, e.unsqueeze(totalB, 1)}), absPos, e.ints(1)})
		cs := e.shape(cosCache)
		if cs.rank() != 2 || !cs.dims[1].static() {
			e.fail("cos_cache must be 2-D with a known second dim")
			return
		}
		rot := 2 * cs.dims[1].v
		interleaved := graph.IntAttr(n, "rotary_interleaved", 0) == 1
		c := e.unsqueeze(e.op("Gather", []string{cosCache, pos}), 1) // [B, 1, S, R/2]
		s := e.unsqueeze(e.op("Gather", []string{sinCache, pos}), 1)
		qh = e.rotate(qh, c, s, rot, interleaved)
		kh = e.rotate(kh, c, s, rot, interleaved)
	}
	keys, values := kh, vh
	if pk != "" {
		keys = e.op("Concat", []string{pk, kh}, graph.AttrInt("axis", 2))
		values = e.op("Concat", []string{pv, vh}, graph.AttrInt("axis", 2))
	}
	if len(n.Output) > 1 && n.Output[1] != "" {
		e.identityTo(keys, n.Output[1])
	}
	if len(n.Output) > 2 && n.Output[2] != "" {
		e.identityTo(values, n.Output[2])
	}

	// Which keys each query sees: [B, 1, S, T].
	totalLen := e.dimOf(keys, 2)
	keyIdx := e.op("Range", []string{e.int0(0), e.squeeze(totalLen, 0), e.int0(1)}) // [T]
	newIdx := e.sub(keyIdx, past)                                                   // t = j − P
	stepCol := e.unsqueeze(steps, 1)                                                // [S, 1]
	// newOK is [T], or [S, T] with a causal or window condition; pastOK
	// and the result [B, S, T] (or [B, 1, T]).
	newOK := e.op("GreaterOrEqual", []string{newIdx, e.ints(0)})
	newRank := 1
	if causal {
		newOK = e.op("And", []string{newOK, e.op("LessOrEqual", []string{newIdx, stepCol})})
		newRank = 2
	}
	if window > 0 {
		newOK = e.op("And", []string{newOK, e.op("Greater", []string{newIdx, e.sub(stepCol, e.ints(window))})})
		newRank = 2
	}
	var allowed string
	switch {
	case pk != "":
		pastOK := e.unsqueeze(e.op("Less", []string{keyIdx, e.unsqueeze(pastB, 1)}), 1) // [B, 1, T]
		if window > 0 {
			lo := e.unsqueeze(e.sub(absPos, e.ints(window)), 2) // [B, S, 1]
			pastOK = e.op("And", []string{pastOK, e.op("Greater", []string{keyIdx, lo})})
		}
		isPast := e.op("Less", []string{keyIdx, past}) // [T]
		newOK = e.op("And", []string{e.op("Not", []string{isPast}), newOK})
		allowed = e.unsqueeze(e.op("Or", []string{e.op("And", []string{isPast, pastOK}), newOK}), 1)
	case newRank == 2:
		allowed = e.unsqueeze(newOK, 0, 1)
	default:
		allowed = e.unsqueeze(newOK, 0, 1, 2)
	}

	// Attention, in float32 for a float16 op.
	ct := dt
	if dt == dtype.Float16 || dt == dtype.BFloat16 {
		ct = dtype.Float32
	}
	group := heads / kvHeads
	repeat := func(x string) string {
		if group == 1 {
			return x
		}
		u := e.unsqueeze(x, 2)
		u = e.op("Expand", []string{u, e.ints(1, 1, group, 1, 1)})
		return e.op("Reshape", []string{u, e.concatInts(e.ints(0, heads, -1), e.dimOf(x, 3))})
	}
	scale := attentionScale(e, n, qh, ct)
	kt := e.transpose(e.cast(repeat(keys), ct), 0, 1, 3, 2)
	scores := e.mul(e.op("MatMul", []string{e.cast(qh, ct), kt}), scale)
	if softcap > 0 {
		scores = e.mul(e.op("Tanh", []string{e.div(scores, e.scalar(softcap, ct))}), e.scalar(softcap, ct))
	}
	if bias != "" {
		scores = e.add(scores, e.cast(bias, ct))
	}
	scores = e.op("Where", []string{allowed, scores, e.scalar(lowestOf(ct), ct)})
	var probs string
	if smooth || sink != "" {
		// One more logit, the sink (0 for smooth_softmax), that only the
		// denominator sees.
		col := e.op("Slice", []string{scores, e.ints(0), e.ints(1), e.ints(3)})
		extra := e.scalar(0, ct)
		if sink != "" {
			extra = e.op("Reshape", []string{e.cast(sink, ct), e.ints(1, heads, 1, 1)})
		}
		col = e.op("Expand", []string{extra, e.shapeOf(col)})
		p := e.op("Softmax", []string{e.op("Concat", []string{scores, col}, graph.AttrInt("axis", 3))}, graph.AttrInt("axis", 3))
		probs = e.op("Slice", []string{p, e.ints(0), totalLen, e.ints(3)})
	} else {
		probs = e.op("Softmax", []string{scores}, graph.AttrInt("axis", 3))
	}
	ctx := e.cast(e.op("MatMul", []string{probs, e.cast(repeat(values), ct)}), dt)
	ctx = e.transpose(ctx, 0, 2, 1, 3)
	e.identityTo(e.op("Reshape", []string{ctx, e.ints(0, 0, -1)}), n.Output[0])
}

// quantType reports whether the string attribute name is set to a KV
// cache quantization other than NONE.
func quantType(n *onnxpb.NodeProto, name string) bool {
	a := graph.Attr(n, name)
	return a != nil && len(a.S) > 0 && string(a.S) != "NONE"
}

// lowestOf returns the most negative finite value of dt, the score of a
// key that a query may not see.
func lowestOf(dt dtype.Type) float64 {
	switch dt {
	case dtype.Float16:
		return -65504
	case dtype.Float64:
		return -math.MaxFloat64
	}
	return -math.MaxFloat32
}

// rotate turns x [B, n, S, D] by the tables c and s (broadcasting to
// [B, n, S, rot/2]) on its first rot channels, as RotaryEmbedding does:
// (x₁·c − x₂·s, x₂·c + x₁·s) for the pairs (x₁, x₂) = (x_j, x_{j+rot/2}),
// or (x_{2j}, x_{2j+1}) when interleaved. The other channels pass.
func (e *emitter) rotate(x, c, s string, rot int64, interleaved bool) string {
	axis := e.ints(-1)
	part := e.op("Slice", []string{x, e.ints(0), e.ints(rot), axis})
	turn := func(x1, x2, c, s string) (string, string) {
		return e.sub(e.mul(x1, c), e.mul(x2, s)), e.add(e.mul(x2, c), e.mul(x1, s))
	}
	var y string
	if interleaved {
		pairs := e.op("Reshape", []string{part, e.ints(0, 0, 0, rot/2, 2)})
		xs := e.split(pairs, -1, 1, 1)
		y1, y2 := turn(xs[0], xs[1], e.unsqueeze(c, -1), e.unsqueeze(s, -1))
		y = e.op("Reshape", []string{e.op("Concat", []string{y1, y2}, graph.AttrInt("axis", -1)), e.ints(0, 0, 0, rot)})
	} else {
		x1 := e.op("Slice", []string{part, e.ints(0), e.ints(rot / 2), axis})
		x2 := e.op("Slice", []string{part, e.ints(rot / 2), e.ints(rot), axis})
		y1, y2 := turn(x1, x2, c, s)
		y = e.op("Concat", []string{y1, y2}, graph.AttrInt("axis", -1))
	}
	rest := e.op("Slice", []string{x, e.ints(rot), e.ints(math.MaxInt64), axis})
	return e.op("Concat", []string{y, rest}, graph.AttrInt("axis", -1))
}

// split cuts x along axis into pieces of the given sizes, in the form the
// opset wants (sizes as an input from opset 13).
func (e *emitter) split(x string, axis int64, sizes ...int64) []string {
	if e.opset < 13 {
		return e.emit("", "Split", []string{x}, len(sizes), graph.AttrInt("axis", axis), graph.AttrInts("split", sizes...))
	}
	return e.emit("", "Split", []string{x, e.ints(sizes...)}, len(sizes), graph.AttrInt("axis", axis))
}
