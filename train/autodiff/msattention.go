package autodiff

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// com.microsoft Attention, the attention that ONNX Runtime's transformer
// optimizer fuses GPT-2 and BERT into: the QKV projection inside, one
// packed weight. It is differentiated through an exact decomposition, so
// that gradients reach the packed weight and bias (a LoRA branch on them)
// and the input.

func init() {
	register("com.microsoft", "Attention", entry{decompose: decomposeAttention, infer: inferAttention})
}

// attentionSizes returns the hidden sizes of q, k and v of an Attention
// node: its qkv_hidden_sizes, or a third each of the weight's width.
func attentionSizes(n *onnxpb.NodeProto, width dim) (q, k, v int64, ok bool) {
	if a := graph.Attr(n, "qkv_hidden_sizes"); a != nil && len(a.Ints) == 3 {
		return a.Ints[0], a.Ints[1], a.Ints[2], true
	}
	if width.static() && width.v%3 == 0 {
		return width.v / 3, width.v / 3, width.v / 3, true
	}
	return 0, 0, 0, false
}

// inferAttention: the output [batch, seq, v_hidden] and present
// [2, batch, heads, total, head_dim].
func inferAttention(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x, w := f.in(n, 0), f.in(n, 1)
	heads := graph.IntAttr(n, "num_heads", 0)
	out, present := unknownShape(), unknownShape()
	if x.shape.rank() == 3 {
		hv := f.freshDim()
		hd := f.freshDim()
		if w.shape.rank() == 2 {
			if _, hk, v, ok := attentionSizes(n, w.shape.dims[1]); ok {
				hv = known(v)
				if heads > 0 {
					hd = known(hk / heads)
				}
			}
		}
		out = rankShape(x.shape.dims[0], x.shape.dims[1], hv)
		present = rankShape(known(2), x.shape.dims[0], known(heads), f.freshDim(), hd)
	}
	outs := []*tinfo{{elem: x.elem, shape: out}}
	if len(n.Output) > 1 {
		outs = append(outs, &tinfo{elem: x.elem, shape: present})
	}
	return outs
}

// decomposeAttention writes Attention out in standard ops, as ONNX
// Runtime's CPU kernel computes it:
//
//	q, k, v = split(input·weights + bias), by qkv_hidden_sizes
//	k, v = past[0] ++ k, past[1] ++ v      (past [2, B, N, P, D], optional)
//	present = stack(k, v)
//	out = concat_heads(softmax(scale·q·kᵀ + attention_bias + mask)·v)
//
// where mask is mask_filter_value (−10000 unless set) at each key that a
// query may not see and 0 elsewhere. A key is hidden by mask_index, in any
// of its forms: [B] the end of each row's keys (padding on the right),
// [2B] ends then starts (padding on the left), [B, T] or [B, S, T] 0 for
// hidden keys; and, with unidirectional, when it lies after the query
// (key j > P + i). The 4-D Megatron mask and [3B+2] are refused, as the CPU
// kernel refuses them, and so are do_rotary, a shared past and present
// buffer, and past_sequence_length.
func decomposeAttention(e *emitter, n *onnxpb.NodeProto) {
	x, w, b := inputOr(n, 0), inputOr(n, 1), inputOr(n, 2)
	mask, past, abias := inputOr(n, 3), inputOr(n, 4), inputOr(n, 5)
	heads := graph.IntAttr(n, "num_heads", 0)
	unidirectional := graph.IntAttr(n, "unidirectional", 0) == 1
	filter := float64(graph.FloatAttr(n, "mask_filter_value", -10000))
	ws := e.shape(w)
	switch {
	case heads <= 0:
		e.fail("num_heads must be positive")
		return
	case graph.IntAttr(n, "do_rotary", 0) != 0:
		e.fail("do_rotary=1 is not supported")
		return
	case graph.IntAttr(n, "past_present_share_buffer", 0) != 0 || inputOr(n, 6) != "":
		e.fail("a past and present sharing one buffer (past_present_share_buffer, past_sequence_length) is not supported")
		return
	case e.shape(x).rank() != 3:
		e.fail("input must have rank 3 (known), not %d", e.shape(x).rank())
		return
	case ws.rank() != 2:
		e.fail("weights must have rank 2 (known)")
		return
	}
	hq, hk, hv, ok := attentionSizes(n, ws.dims[1])
	if past != "" && ok && (hq != hk || hk != hv) {
		e.fail("with a past, q, k and v must have one hidden size")
		return
	}
	dt := e.typeOf(x)
	qkv := e.op("MatMul", []string{x, w})
	if b != "" {
		qkv = e.add(qkv, b)
	}
	var parts []string
	var headDim string // rank 0, float: the head size where not known statically
	switch {
	case ok:
		parts = e.split(qkv, -1, hq, hk, hv)
	case e.opset >= 13:
		// Thirds of a width known only at run time.
		third := e.op("Div", []string{e.dimOf(w, 1), e.ints(3)})
		parts = e.emit("", "Split", []string{qkv, e.concatInts(third, third, third)}, 3, graph.AttrInt("axis", -1))
		headDim = e.cast(e.squeeze(e.op("Div", []string{third, e.ints(heads)}), 0), dt)
	default:
		e.fail("the widths of q, k and v must be known before opset 13: give qkv_hidden_sizes or weights of a known width")
		return
	}
	toHeads := func(x string) string {
		return e.transpose(e.op("Reshape", []string{x, e.ints(0, 0, heads, -1)}), 0, 2, 1, 3)
	}
	q, k, v := toHeads(parts[0]), toHeads(parts[1]), toHeads(parts[2])
	pastLen := e.ints(0)
	if past != "" {
		pk := e.op("Gather", []string{past, e.int0(0)}, graph.AttrInt("axis", 0))
		pv := e.op("Gather", []string{past, e.int0(1)}, graph.AttrInt("axis", 0))
		k = e.op("Concat", []string{pk, k}, graph.AttrInt("axis", 2))
		v = e.op("Concat", []string{pv, v}, graph.AttrInt("axis", 2))
		pastLen = e.dimOf(past, 3)
	}
	if len(n.Output) > 1 && n.Output[1] != "" {
		e.identityTo(e.op("Concat", []string{e.unsqueeze(k, 0), e.unsqueeze(v, 0)}, graph.AttrInt("axis", 0)), n.Output[1])
	}

	var scale string
	switch a := graph.Attr(n, "scale"); {
	case a != nil && a.F != 0:
		scale = e.scalar(float64(a.F), dt)
	case headDim == "":
		scale = e.scalar(1/math.Sqrt(float64(hq/heads)), dt)
	default:
		scale = e.op("Reciprocal", []string{e.op("Sqrt", []string{headDim})})
	}
	scores := e.mul(e.op("MatMul", []string{q, e.transpose(k, 0, 1, 3, 2)}), scale)
	if abias != "" {
		scores = e.add(scores, abias)
	}

	// allowed: bool, broadcasting to [B, N, S, T].
	total := e.dimOf(k, 2)
	keyIdx := e.op("Range", []string{e.int0(0), e.squeeze(total, 0), e.int0(1)}) // [T]
	var allowed string
	if mask != "" {
		allowed = e.keyMask(n, mask, x, keyIdx)
		if e.err != nil {
			return
		}
	}
	if unidirectional {
		steps := e.op("Range", []string{e.int0(0), e.squeeze(e.dimOf(x, 1), 0), e.int0(1)})
		qpos := e.unsqueeze(e.add(steps, pastLen), 1)                            // [S, 1]
		causal := e.unsqueeze(e.op("LessOrEqual", []string{keyIdx, qpos}), 0, 1) // [1, 1, S, T]
		if allowed == "" {
			allowed = causal
		} else {
			allowed = e.op("And", []string{allowed, causal})
		}
	}
	if allowed != "" {
		scores = e.add(scores, e.op("Where", []string{allowed, e.scalar(0, dt), e.scalar(filter, dt)}))
	}
	probs := e.op("Softmax", []string{scores}, graph.AttrInt("axis", 3))
	ctx := e.transpose(e.op("MatMul", []string{probs, v}), 0, 2, 1, 3)
	e.identityTo(e.op("Reshape", []string{ctx, e.ints(0, 0, -1)}), n.Output[0])
}

// keyMask turns the mask input of attention node n (Attention's
// mask_index, MultiHeadAttention's key_padding_mask) into a bool that says
// which keys each query may see, broadcasting to [B, N, S, T]: from a [B]
// or [2B] index (ends, then starts), or a [B, T] or [B, S, T] mask of 0
// and 1. x is a value whose first dim is the batch, keyIdx the key
// positions [T].
func (e *emitter) keyMask(n *onnxpb.NodeProto, mask, x, keyIdx string) string {
	m := e.cast(mask, dtype.Int64)
	switch e.shape(mask).rank() {
	case 1:
		if ms, xs := e.shape(mask), e.shape(x); xs.rank() > 0 && ms.dims[0].static() && xs.dims[0].static() && ms.dims[0].v == 3*xs.dims[0].v+2 {
			e.fail("the [3·batch+2] mask_index is not supported")
			return ""
		}
		// ends = mask[:B]; starts = mask[B:2B], or 0 for a [B] index.
		batch := e.dimOf(x, 0)
		zeros := e.op("ConstantOfShape", []string{batch}, graph.AttrTensor("value", graph.NewInt64Tensor("", []int64{1}, []int64{0})))
		ends := e.op("Slice", []string{m, e.ints(0), batch, e.ints(0)})
		starts := e.op("Slice", []string{e.op("Concat", []string{m, zeros}, graph.AttrInt("axis", 0)), batch, e.addInts(batch, batch), e.ints(0)})
		ok := e.op("And", []string{
			e.op("Less", []string{keyIdx, e.unsqueeze(ends, 1)}),
			e.op("GreaterOrEqual", []string{keyIdx, e.unsqueeze(starts, 1)}),
		}) // [B, T]
		return e.unsqueeze(ok, 1, 2)
	case 2:
		return e.unsqueeze(e.cast(m, dtype.Bool), 1, 2)
	case 3:
		return e.unsqueeze(e.cast(m, dtype.Bool), 1)
	case 4:
		e.fail("the 4-D mask_index (Megatron GPT-2) is not supported: ONNX Runtime's CPU kernel does not run it either")
	default:
		e.fail("the rank of mask_index must be known")
	}
	return ""
}
