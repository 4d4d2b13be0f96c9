package models

import (
	"fmt"
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// ModelBuilderOptions shape a LLaMA graph laid out as the onnxruntime-genai
// model builder (src/python/py/models/builder.py) lays out a decoder for
// ONNX Runtime's CPU:
//
//   - /model/embed_tokens/Gather; the first norm is a
//     SimplifiedLayerNormalization node /model/layers.0/input_layernorm/LayerNorm
//     (output /model/layers.0/input_layernorm/output_0), every later one a
//     com.microsoft SkipSimplifiedLayerNormalization .../SkipLayerNorm that
//     adds the residual and passes the sum on as its output 3
//     (.../output_3); the last is /model/layers.{L}/final_norm_layernorm.
//   - q, k, v and o as MatMul nodes /model/layers.{i}/attn/q_proj/MatMul
//     reading model.layers.{i}.attn.q_proj.MatMul.weight [in, out]; the MLP
//     as /model/layers.{i}/mlp/gate_proj/MatMul, up_proj, act_fn/Sigmoid,
//     act_fn/Mul, mlp/Mul and down_proj; the head /lm_head/MatMul reading
//     lm_head.MatMul.weight.
//   - com.microsoft GroupQueryAttention /model/layers.{i}/attn/GroupQueryAttention
//     with num_heads, kv_num_heads (fewer where KVHeads < Heads), scale
//     1/√head_dim, local_window_size −1, softcap 0, past_key_values.{i}.key
//     and .value in, present.{i}.key and .value out.
//   - seqlens_k (ReduceSum of attention_mask − 1, int32) and
//     total_sequence_length (its second dim, int32) from
//     /model/attn_mask_reformat/attn_mask_subgraph, with the builder's
//     Constant nodes (/model/constant_nodes/INT64/[1]).
//   - The rotary embedding inside GroupQueryAttention (do_rotary=1 with
//     the initializers cos_cache and sin_cache, [MaxPositions, head_dim/2],
//     rotary_interleaved as RopeInterleaved says), and no position_ids
//     input: the positions follow from seqlens_k.
//
// Weights hold the values that the Optimum layout of the same config
// holds under its names (model.layers.0.self_attn.q_proj.weight), so both
// layouts compute the same function. int4 models are these graphs passed
// through quantize.Model (MatMulNBits, named …/MatMul_Q4), as the builder
// quantizes its float MatMuls.
type ModelBuilderOptions struct {
	// PackedQKV computes q, k and v with one MatMul
	// /model/layers.{i}/attn/qkv_proj/MatMul (model.layers.{i}.attn.qkv_proj.MatMul.weight,
	// [hidden, (heads + 2·kv_heads)·head_dim]) whose output is
	// GroupQueryAttention's packed query, as the builder does by default.
	PackedQKV bool
	// RotaryNodes applies the rotary embedding before attention, with
	// com.microsoft RotaryEmbedding nodes /model/layers.{i}/attn/q_rotary/RotaryEmbedding
	// and k_rotary reading a position_ids input (do_rotary=0), as the
	// builder does where GroupQueryAttention cannot rotate (DirectML).
	// It excludes PackedQKV, as in the builder.
	RotaryNodes bool
	// Unfused builds the standard-op twin: the same nodes and weights
	// under the same names, except that each fused op is written out in
	// standard ops (the norms as Pow, ReduceMean, Sqrt, Div, Mul in float32;
	// the rotation from the same caches; attention with a causal and
	// padding mask from attention_mask and repeated KV heads). On a batch
	// without padding, or padded on the right, it computes what the fused
	// graph computes at every position that is not padding.
	Unfused bool
}

// check reports options that the model builder never combines.
func (o ModelBuilderOptions) check(c LlamaConfig) error {
	if o.PackedQKV && o.RotaryNodes {
		return errorf("llama: the model builder packs q, k and v only where GroupQueryAttention applies the rotary embedding: PackedQKV and RotaryNodes exclude each other")
	}
	return nil
}

// builderNodeName names a node as the model builder does: a norm is
// <scope>/LayerNorm or <scope>/SkipLayerNorm whatever its op, any other
// node <scope>/<op>.
func builderNodeName(scope, op string) string {
	switch op {
	case "SimplifiedLayerNormalization", "LayerNormalization":
		return scope + "/LayerNorm"
	case "SkipSimplifiedLayerNormalization", "SkipLayerNormalization":
		return scope + "/SkipLayerNorm"
	}
	return scope + "/" + op
}

// modelBuilder builds one model-builder decoder.
type modelBuilder struct {
	*exporter
	c      LlamaConfig
	consts map[string]bool // the builder's constants made so far
}

// modelBuilderLlama builds Llama(c) for Producer ModelBuilder; c has its
// defaults and is valid.
func modelBuilderLlama(c LlamaConfig) (*graph.Model, error) {
	o := c.Builder
	ex := newExporterWith("llama", c.DType, c.Seed, c.InitStd, graph.BuilderOptions{
		Outputs: graph.OutputsUnderNode, ConstantNodes: true, NodeName: builderNodeName,
	})
	mb := &modelBuilder{exporter: ex, c: c, consts: map[string]bool{}}
	m := ex.Model()
	if !o.Unfused {
		m.SetOpset("com.microsoft", 1)
	}
	e, h, kv, d := c.Hidden, c.Heads, c.KVHeads, c.HeadDim()

	top, root := ex.llamaEmbedding(c, o.RotaryNodes)
	at := &attentionInputs{}
	if o.Unfused {
		at.mask, at.qpos = ex.causalMask(top.In("attn_mask_reformat"), "input_ids", "attention_mask")
	} else {
		at.seqlensK, at.totalLen = mb.maskReformat(top.In("attn_mask_reformat").In("attn_mask_subgraph"))
	}
	at.cos, at.sin = mb.rotaryCaches()

	var normed, skip string
	for i := range c.Layers {
		layer := top.In(fmt.Sprintf("layers.%d", i))
		from := fmt.Sprintf("model.layers.%d.", i) // the Optimum names the values are drawn under
		to := fmt.Sprintf("model.layers.%d.attn.", i)
		attn := layer.In("attn")

		w := ex.normal(from+"input_layernorm.weight", []int64{int64(e)}, 1, normStd)
		if i == 0 {
			normed = mb.simplifiedNorm(layer.In("input_layernorm"), root, w)
		} else {
			normed, root = mb.skipSimplifiedNorm(layer.In("input_layernorm"), root, skip, w, true)
		}

		var q, k, v string
		if o.PackedQKV {
			wqkv := ex.packedWeight(to+"qkv_proj.MatMul.weight",
				[]string{from + "self_attn.q_proj.weight", from + "self_attn.k_proj.weight", from + "self_attn.v_proj.weight"},
				e, []int{h * d, kv * d, kv * d}, 0, ex.std)
			q = attn.In("qkv_proj").Op("MatMul", []string{normed, wqkv})
		} else {
			proj := func(name string, width int) string {
				w := ex.weightAs(to+name+".MatMul.weight", from+"self_attn."+name+".weight", int64(e), int64(width))
				return attn.In(name).Op("MatMul", []string{normed, w})
			}
			q, k, v = proj("q_proj", h*d), proj("k_proj", kv*d), proj("v_proj", kv*d)
		}
		if o.RotaryNodes && !o.Unfused {
			q = mb.rotaryNode(attn.In("q_rotary"), q, at)
			k = mb.rotaryNode(attn.In("k_rotary"), k, at)
		}
		a := mb.groupQueryAttention(attn, i, q, k, v, at)
		wo := ex.weightAs(to+"o_proj.MatMul.weight", from+"self_attn.o_proj.weight", int64(h*d), int64(e))
		skip = attn.In("o_proj").Op("MatMul", []string{a, wo})

		w = ex.normal(from+"post_attention_layernorm.weight", []int64{int64(e)}, 1, normStd)
		normed, root = mb.skipSimplifiedNorm(layer.In("post_attention_layernorm"), root, skip, w, true)

		mlp := layer.In("mlp")
		lin := func(name, x string, in, out int) string {
			w := ex.weightAs(fmt.Sprintf("model.layers.%d.mlp.%s.MatMul.weight", i, name), from+"mlp."+name+".weight", int64(in), int64(out))
			return mlp.In(name).Op("MatMul", []string{x, w})
		}
		g := lin("gate_proj", normed, e, c.Intermediate)
		act := mlp.In("act_fn")
		g = act.Op("Mul", []string{g, act.Op("Sigmoid", []string{g})})
		u := lin("up_proj", normed, e, c.Intermediate)
		g = mlp.Op("Mul", []string{g, u})
		skip = lin("down_proj", g, c.Intermediate, e)
	}
	final := top.In(fmt.Sprintf("layers.%d", c.Layers)).In("final_norm_layernorm")
	w := ex.normalAs(fmt.Sprintf("model.layers.%d.final_norm_layernorm.weight", c.Layers), "model.norm.weight", []int64{int64(e)}, 1, normStd)
	normed, _ = mb.skipSimplifiedNorm(final, root, skip, w, false)
	head := ex.weightAs("lm_head.MatMul.weight", "lm_head.weight", int64(e), int64(c.VocabSize))
	ex.At("/lm_head").NodeTo("", "MatMul", []string{normed, head}, []string{"logits"})

	c.layout().addOutputs(m)
	return ex.finish("llama")
}

// attentionInputs are the values every layer's attention reads: the fused
// graph's seqlens_k and total_sequence_length, or the twin's additive mask
// and query positions, and the rotary caches.
type attentionInputs struct {
	seqlensK, totalLen string
	mask, qpos         string
	cos, sin           string
}

// constant returns the builder's constant of t, /model/constants/<label>,
// made by a Constant node /model/constant_nodes/<label> the first time.
func (mb *modelBuilder) constant(label string, t *onnxpb.TensorProto) string {
	out := "/model/constants/" + label
	if !mb.consts[out] {
		mb.consts[out] = true
		mb.Model().AddNode(&onnxpb.NodeProto{
			OpType: "Constant", Name: "/model/constant_nodes/" + label,
			Output: []string{out}, Attribute: []*onnxpb.AttributeProto{graph.AttrTensor("value", t)},
		})
	}
	return out
}

// maskReformat adds the builder's attention-mask subgraph for
// GroupQueryAttention in scope s: seqlens_k = ReduceSum(attention_mask) − 1
// and total_sequence_length = attention_mask's second dim, both int32.
func (mb *modelBuilder) maskReformat(s *graph.Builder) (seqlensK, totalLen string) {
	one1 := mb.constant("INT64/[1]", graph.NewInt64Tensor("", []int64{1}, []int64{1}))
	one := mb.constant("INT64/1", graph.NewInt64Tensor("", nil, []int64{1}))
	sum := s.Op("ReduceSum", []string{"attention_mask", one1}, graph.AttrInt("keepdims", 0))
	sub := s.Op("Sub", []string{sum, one1})
	seqlensK = s.In("Sub").Op("Cast", []string{sub}, graph.AttrInt("to", int64(dtype.Int32)))
	shape := s.Op("Shape", []string{"attention_mask"})
	total := s.Op("Gather", []string{shape, one}, graph.AttrInt("axis", 0))
	totalLen = s.In("Gather").Op("Cast", []string{total}, graph.AttrInt("to", int64(dtype.Int32)))
	return seqlensK, totalLen
}

// rotaryCaches adds the initializers cos_cache and sin_cache,
// [MaxPositions, head_dim/2]: cos and sin of t·θ^(−2j/head_dim) for
// position t and frequency j, in the model's type.
func (mb *modelBuilder) rotaryCaches() (cos, sin string) {
	c := mb.c
	d, n := c.HeadDim(), c.MaxPositions
	cv := make([]float64, n*d/2)
	sv := make([]float64, n*d/2)
	for t := range n {
		for j := range d / 2 {
			a := float64(t) / math.Pow(c.RopeTheta, float64(2*j)/float64(d))
			cv[t*d/2+j], sv[t*d/2+j] = math.Cos(a), math.Sin(a)
		}
	}
	dims := []int64{int64(n), int64(d / 2)}
	mb.Model().AddInitializer(graph.NewFloatTensor("cos_cache", c.DType, dims, cv))
	mb.Model().AddInitializer(graph.NewFloatTensor("sin_cache", c.DType, dims, sv))
	return "cos_cache", "sin_cache"
}

// simplifiedNorm adds RMSNorm of x with weight w in scope s: one
// SimplifiedLayerNormalization node writing <scope>/output_0, or, in the
// twin, the same in standard ops.
func (mb *modelBuilder) simplifiedNorm(s *graph.Builder, x, w string) string {
	if mb.c.Builder.Unfused {
		return mb.rmsNormStash(s, x, w)
	}
	return s.NodeTo("", "SimplifiedLayerNormalization", []string{x, w}, []string{s.Scope() + "/output_0"},
		graph.AttrFloat("epsilon", float32(mb.c.RMSNormEps)), graph.AttrInt("axis", -1), graph.AttrInt("stash_type", 1)).Output[0]
}

// skipSimplifiedNorm adds RMSNorm of root + skip with weight w in scope s
// and returns it and the sum: one SkipSimplifiedLayerNormalization node
// writing <scope>/output_0 and, with keepSum, the sum as <scope>/output_3;
// or, in the twin, an Add and the norm in standard ops.
func (mb *modelBuilder) skipSimplifiedNorm(s *graph.Builder, root, skip, w string, keepSum bool) (out, sum string) {
	if mb.c.Builder.Unfused {
		sum = s.Op("Add", []string{root, skip})
		return mb.rmsNormStash(s, sum, w), sum
	}
	outs := []string{s.Scope() + "/output_0"}
	if keepSum {
		outs = append(outs, "", "", s.Scope()+"/output_3")
	}
	n := s.NodeTo("com.microsoft", "SkipSimplifiedLayerNormalization", []string{root, skip, w}, outs,
		graph.AttrFloat("epsilon", float32(mb.c.RMSNormEps)))
	if keepSum {
		sum = n.Output[3]
	}
	return n.Output[0], sum
}

// rmsNormStash is SimplifiedLayerNormalization with stash_type 1 in
// standard ops: x·w / sqrt(mean(x²) + eps), all in float32, cast back to
// the model's type.
func (mb *modelBuilder) rmsNormStash(s *graph.Builder, x, w string) string {
	x32 := castTo(s, x, mb.elem, dtype.Float32)
	sq := s.Op("Pow", []string{x32, mb.Scalar(dtype.Float32, 2)})
	mean := s.Op("ReduceMean", []string{sq}, graph.AttrInts("axes", -1), graph.AttrInt("keepdims", 1))
	v := s.Op("Add", []string{mean, mb.Scalar(dtype.Float32, mb.c.RMSNormEps)})
	n := s.Op("Div", []string{x32, s.Op("Sqrt", []string{v})})
	n = s.Op("Mul", []string{n, castTo(s, w, mb.elem, dtype.Float32)})
	return castTo(s, n, dtype.Float32, mb.elem)
}

// rotaryNode adds a com.microsoft RotaryEmbedding node in scope s that
// turns x [batch, seq, heads·head_dim] by position_ids, as the builder
// writes it where the rotation is not fused into attention.
func (mb *modelBuilder) rotaryNode(s *graph.Builder, x string, at *attentionInputs) string {
	interleaved := int64(0)
	if mb.c.RopeInterleaved {
		interleaved = 1
	}
	return s.Node("com.microsoft", "RotaryEmbedding", []string{x, "position_ids", at.cos, at.sin}, 1,
		graph.AttrInt("interleaved", interleaved), graph.AttrInt("num_heads", 0), graph.AttrInt("rotary_embedding_dim", 0)).Output[0]
}

// groupQueryAttention adds layer i's attention in scope s and returns its
// output [batch, seq, heads·head_dim]: one GroupQueryAttention node, or,
// in the twin, its standard-op equivalent. q is the packed QKV with
// PackedQKV (k and v then ""); q and k are already turned with
// RotaryNodes.
func (mb *modelBuilder) groupQueryAttention(s *graph.Builder, i int, q, k, v string, at *attentionInputs) string {
	c, o := mb.c, mb.c.Builder
	h, kv, d := c.Heads, c.KVHeads, c.HeadDim()
	pastK, pastV := fmt.Sprintf("past_key_values.%d.key", i), fmt.Sprintf("past_key_values.%d.value", i)
	presentK, presentV := fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i)
	if !o.Unfused {
		inputs := []string{q, k, v, "", "", at.seqlensK, at.totalLen}
		if !c.NoCache {
			inputs[3], inputs[4] = pastK, pastV
		}
		doRotary := int64(0)
		if !o.RotaryNodes {
			doRotary = 1
			inputs = append(inputs, at.cos, at.sin)
		}
		interleaved := int64(0)
		if c.RopeInterleaved {
			interleaved = 1
		}
		// GroupQueryAttention always writes present_key and present_value;
		// without a cache they are values nothing reads.
		outs := []string{s.Scope() + "/GroupQueryAttention/output_0", s.Scope() + "/GroupQueryAttention/output_1", s.Scope() + "/GroupQueryAttention/output_2"}
		if !c.NoCache {
			outs[1], outs[2] = presentK, presentV
		}
		n := s.NodeTo("com.microsoft", "GroupQueryAttention", inputs, outs,
			graph.AttrInt("num_heads", int64(h)), graph.AttrInt("kv_num_heads", int64(kv)),
			graph.AttrFloat("scale", float32(1/math.Sqrt(float64(d)))),
			graph.AttrInt("local_window_size", -1), graph.AttrFloat("softcap", 0),
			graph.AttrInt("do_rotary", doRotary), graph.AttrInt("rotary_interleaved", interleaved))
		return n.Output[0]
	}

	if o.PackedQKV {
		parts := s.Node("", "Split", []string{q, mb.Int64s(int64(h*d), int64(kv*d), int64(kv*d))}, 3, graph.AttrInt("axis", -1)).Output
		q, k, v = parts[0], parts[1], parts[2]
	}
	qh, kh, vh := mb.splitHeads(s, q, h, d), mb.splitHeads(s, k, kv, d), mb.splitHeads(s, v, kv, d)
	var cos, sin string
	if o.RotaryNodes {
		// cos_cache[position_ids]: [batch, 1, seq, head_dim/2]
		cos = s.Op("Unsqueeze", []string{s.Op("Gather", []string{at.cos, "position_ids"}), mb.Int64s(1)})
		sin = s.Op("Unsqueeze", []string{s.Op("Gather", []string{at.sin, "position_ids"}), mb.Int64s(1)})
	} else {
		// cos_cache[past … total−1]: [seq, head_dim/2]
		cos = s.Op("Gather", []string{at.cos, at.qpos})
		sin = s.Op("Gather", []string{at.sin, at.qpos})
	}
	qh = mb.rotateCached(s, qh, cos, sin)
	kh = mb.rotateCached(s, kh, cos, sin)
	if !c.NoCache {
		kh = opTo(s, presentK, "Concat", []string{pastK, kh}, graph.AttrInt("axis", 2))
		vh = opTo(s, presentV, "Concat", []string{pastV, vh}, graph.AttrInt("axis", 2))
	}
	kh = mb.repeatKV(s, kh, kv, h/kv, d)
	vh = mb.repeatKV(s, vh, kv, h/kv, d)
	a := mb.attention(s, qh, kh, vh, at.mask, d, false)
	return mb.mergeHeads(s, a, h*d)
}

// rotateCached turns x [batch, heads, seq, head_dim] by the rotary tables
// cos and sin, each broadcasting to [batch, heads, seq, head_dim/2], as
// RotaryEmbedding does: (x₁·cos − x₂·sin, x₂·cos + x₁·sin) for the pairs
// (x₁, x₂) = (x_j, x_{j+d/2}), or (x_{2j}, x_{2j+1}) when interleaved.
func (mb *modelBuilder) rotateCached(s *graph.Builder, x, cos, sin string) string {
	d := int64(mb.c.HeadDim())
	turn := func(x1, x2, c, sn string) (string, string) {
		y1 := s.Op("Sub", []string{s.Op("Mul", []string{x1, c}), s.Op("Mul", []string{x2, sn})})
		y2 := s.Op("Add", []string{s.Op("Mul", []string{x2, c}), s.Op("Mul", []string{x1, sn})})
		return y1, y2
	}
	if mb.c.RopeInterleaved {
		pairs := s.Op("Reshape", []string{x, mb.Int64s(0, 0, 0, d/2, 2)})
		parts := s.Node("", "Split", []string{pairs, mb.Int64s(1, 1)}, 2, graph.AttrInt("axis", -1)).Output
		c := s.Op("Unsqueeze", []string{cos, mb.Int64s(-1)})
		sn := s.Op("Unsqueeze", []string{sin, mb.Int64s(-1)})
		y1, y2 := turn(parts[0], parts[1], c, sn)
		y := s.Op("Concat", []string{y1, y2}, graph.AttrInt("axis", -1))
		return s.Op("Reshape", []string{y, mb.Int64s(0, 0, 0, d)})
	}
	axis := mb.Int64s(-1)
	x1 := s.Op("Slice", []string{x, mb.Int64s(0), mb.Int64s(d / 2), axis})
	x2 := s.Op("Slice", []string{x, mb.Int64s(d / 2), mb.Int64s(d), axis})
	y1, y2 := turn(x1, x2, cos, sin)
	return s.Op("Concat", []string{y1, y2}, graph.AttrInt("axis", -1))
}
