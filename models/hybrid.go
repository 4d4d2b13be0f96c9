package models

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// HybridLayer is the mixer of one layer of a hybrid decoder.
type HybridLayer string

// The mixers of a hybrid decoder's layers.
const (
	// HybridConv is a causal depthwise convolution over the sequence,
	// whose state is the last ConvKernel−1 inputs it saw.
	HybridConv HybridLayer = "conv"
	// HybridAttention is LLaMA's self-attention, with a KV cache.
	HybridAttention HybridLayer = "attention"
)

// HybridConfig sizes a hybrid decoder in the manner of LFM2: layers whose
// mixer is a short convolution, with a state that has no past-length
// dimension, among layers of attention with a KV cache. Zero values of the
// optional fields take the defaults given beside them.
type HybridConfig struct {
	VocabSize    int
	Hidden       int // model width; a multiple of Heads
	Heads        int // query heads of the attention layers
	KVHeads      int // key/value heads; 0 means Heads
	Intermediate int // width of the gated MLP
	// Layers lists each layer's mixer, in order.
	Layers []HybridLayer
	// ConvKernel is the convolution's width; its state holds
	// ConvKernel−1 steps. 0 means 4.
	ConvKernel int

	RMSNormEps float64 // 0 means 1e-6
	RopeTheta  float64 // 0 means 10000

	Seed    uint64  // weights are a function of Seed alone
	InitStd float64 // standard deviation of linear and embedding weights; 0 means 0.02
}

// HybridTiny is the size the tests use: hidden 16, four layers (conv,
// attention, conv, attention), 4 heads over 2 KV heads, kernel 4,
// vocabulary 32. Its caches cover layers 1 and 3 only.
func HybridTiny() HybridConfig {
	return HybridConfig{VocabSize: 32, Hidden: 16, Heads: 4, KVHeads: 2, Intermediate: 40,
		Layers: []HybridLayer{HybridConv, HybridAttention, HybridConv, HybridAttention}, Seed: 1}
}

func (c HybridConfig) withDefaults() HybridConfig {
	c.KVHeads = cmp.Or(c.KVHeads, c.Heads)
	c.ConvKernel = cmp.Or(c.ConvKernel, 4)
	c.RMSNormEps = cmp.Or(c.RMSNormEps, 1e-6)
	c.RopeTheta = cmp.Or(c.RopeTheta, 10000)
	c.InitStd = cmp.Or(c.InitStd, defaultInitStd)
	return c
}

// Validate reports a config that cannot be built.
func (c HybridConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.VocabSize <= 0 || c.Hidden <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Intermediate <= 0 || len(c.Layers) == 0:
		return errorf("hybrid: sizes must be positive and there must be layers: %+v", c)
	case c.Hidden%c.Heads != 0 || c.Heads%c.KVHeads != 0:
		return errorf("hybrid: hidden %d, heads %d and KV heads %d do not divide", c.Hidden, c.Heads, c.KVHeads)
	case (c.Hidden/c.Heads)%2 != 0:
		return errorf("hybrid: head dim %d is odd; RoPE needs it even", c.Hidden/c.Heads)
	case c.ConvKernel < 2:
		return errorf("hybrid: conv kernel %d: want 2 or more", c.ConvKernel)
	case c.InitStd < 0 || c.RMSNormEps < 0 || c.RopeTheta < 0:
		return errorf("hybrid: InitStd, RMSNormEps and RopeTheta must not be negative")
	}
	for i, l := range c.Layers {
		if l != HybridConv && l != HybridAttention {
			return errorf("hybrid: layer %d is %q, want %q or %q", i, l, HybridConv, HybridAttention)
		}
	}
	return nil
}

// Hybrid builds a hybrid decoder in float32.
//
// Inputs: input_ids [batch, seq] int64, attention_mask [batch, past+seq]
// int64, position_ids [batch, seq] int64, then per layer in order either
// past_conv.{i} [batch, hidden, kernel−1] (a convolution layer's state,
// without a past-length dimension) or past_key_values.{i}.key and .value
// [batch, kv_heads, past, head_dim] (an attention layer's cache). Outputs:
// logits [batch, seq, vocab], then per layer present_conv.{i} (the last
// kernel−1 inputs of the convolution, state and this run's together) or
// present.{i}.key and .value. A fresh sequence takes a zero state and an
// empty cache; feeding a sequence in pieces, each with the state and cache
// of the piece before, gives the logits of feeding it at once.
//
// A convolution layer is in_proj, the depthwise causal convolution
// y[t] = Σ_k w[k]·x[t−(kernel−1)+k] over [state, x] (Slice, Mul and Add
// nodes under /model/layers.{i}/conv/conv, weight
// model.layers.{i}.conv.conv.weight [hidden, kernel]), and out_proj. An
// attention layer is LLaMA's: q_proj, k_proj, v_proj, RoPE, o_proj. Every
// layer has RMSNorms and LLaMA's gated MLP; linear layers are MatMul
// nodes named /model/layers.{i}/conv/in_proj/MatMul,
// /model/layers.{i}/self_attn/q_proj/MatMul, /model/layers.{i}/mlp/gate_proj/MatMul,
// ….
func Hybrid(c HybridConfig) (*graph.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	ex := newExporter("hybrid", dtype.Float32, c.Seed, c.InitStd, false)
	m := ex.Model()
	e, h, kv, d, k := c.Hidden, c.Heads, c.KVHeads, c.Hidden/c.Heads, c.ConvKernel

	m.AddInput(graph.SymbolicTensorInfo("input_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	m.AddInput(graph.SymbolicTensorInfo("attention_mask", dtype.Int64, []graph.Dim{batchDim, totalDim}))
	m.AddInput(graph.SymbolicTensorInfo("position_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	var outputs []string
	for i, l := range c.Layers {
		if l == HybridConv {
			m.AddInput(graph.SymbolicTensorInfo(fmt.Sprintf("past_conv.%d", i), dtype.Float32, []graph.Dim{batchDim, sized(e), sized(k - 1)}))
			continue
		}
		for _, kind := range []string{"key", "value"} {
			m.AddInput(graph.SymbolicTensorInfo(fmt.Sprintf("past_key_values.%d.%s", i, kind), dtype.Float32, []graph.Dim{batchDim, sized(kv), pastDim, sized(d)}))
		}
	}

	top := ex.At("/model")
	emb := ex.weight("model.embed_tokens.weight", int64(c.VocabSize), int64(e))
	x := top.In("embed_tokens").Op("Gather", []string{emb, "input_ids"})
	mask, _ := ex.causalMask(top, "input_ids", "attention_mask")
	cos, sin := ex.rotary(top.In("rotary_emb"), "position_ids", d, c.RopeTheta, false)

	for i, l := range c.Layers {
		layer := top.In(fmt.Sprintf("layers.%d", i))
		module := fmt.Sprintf("model.layers.%d", i)
		n := ex.rmsNorm(layer.In("operator_norm"), module+".operator_norm", x, e, c.RMSNormEps)
		var a string
		if l == HybridConv {
			a = ex.shortConv(layer.In("conv"), module+".conv", n, i, e, k)
			outputs = append(outputs, fmt.Sprintf("present_conv.%d", i))
		} else {
			attn := layer.In("self_attn")
			q := ex.linear(attn.In("q_proj"), module+".self_attn.q_proj", n, e, h*d, false, "")
			kk := ex.linear(attn.In("k_proj"), module+".self_attn.k_proj", n, e, kv*d, false, "")
			v := ex.linear(attn.In("v_proj"), module+".self_attn.v_proj", n, e, kv*d, false, "")
			q = ex.rope(attn, ex.splitHeads(attn, q, h, d), cos, sin, d, false)
			kk = ex.rope(attn, ex.splitHeads(attn, kk, kv, d), cos, sin, d, false)
			v = ex.splitHeads(attn, v, kv, d)
			kk = opTo(attn, fmt.Sprintf("present.%d.key", i), "Concat", []string{fmt.Sprintf("past_key_values.%d.key", i), kk}, graph.AttrInt("axis", 2))
			v = opTo(attn, fmt.Sprintf("present.%d.value", i), "Concat", []string{fmt.Sprintf("past_key_values.%d.value", i), v}, graph.AttrInt("axis", 2))
			outputs = append(outputs, fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i))
			kk = ex.repeatKV(attn, kk, kv, h/kv, d)
			v = ex.repeatKV(attn, v, kv, h/kv, d)
			a = ex.attention(attn, q, kk, v, mask, d, false)
			a = ex.mergeHeads(attn, a, h*d)
			a = ex.linear(attn.In("o_proj"), module+".self_attn.o_proj", a, h*d, e, false, "")
		}
		x = layer.Op("Add", []string{x, a})

		mlp := layer.In("mlp")
		n = ex.rmsNorm(layer.In("ffn_norm"), module+".ffn_norm", x, e, c.RMSNormEps)
		x = layer.Op("Add", []string{x, ex.swiGLU(mlp, module+".mlp", n, e, c.Intermediate)})
	}
	x = ex.rmsNorm(top.In("norm"), "model.norm", x, e, c.RMSNormEps)
	ex.linear(ex.At("/lm_head"), "lm_head", x, e, c.VocabSize, false, "logits")

	m.AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(c.VocabSize)}))
	for _, name := range outputs {
		dims := []graph.Dim{batchDim, sized(kv), totalDim, sized(d)}
		if strings.HasPrefix(name, "present_conv") {
			dims = []graph.Dim{batchDim, sized(e), sized(k - 1)}
		}
		m.AddOutput(graph.SymbolicTensorInfo(name, dtype.Float32, dims))
	}
	return ex.finish("hybrid")
}

// shortConv adds a convolution layer's mixer on x [batch, seq, width] in
// scope s: in_proj, the causal depthwise convolution of width kernel over
// [past_conv.{layer}, x], whose last kernel−1 steps are written to
// present_conv.{layer}, and out_proj.
func (ex *exporter) shortConv(s *graph.Builder, module, x string, layer, width, kernel int) string {
	x = ex.linear(s.In("in_proj"), module+".in_proj", x, width, width, false, "")
	cs := s.In("conv")
	xt := cs.Op("Transpose", []string{x}, graph.AttrInts("perm", 0, 2, 1)) // [batch, width, seq]
	cat := cs.Op("Concat", []string{fmt.Sprintf("past_conv.%d", layer), xt}, graph.AttrInt("axis", 2))
	axis := ex.Int64s(2)
	keep := int64(kernel - 1)
	cs.NodeTo("", "Slice", []string{cat, ex.Int64s(-keep), ex.Int64s(1 << 62), axis}, []string{fmt.Sprintf("present_conv.%d", layer)})
	w := ex.weight(module+".conv.weight", int64(width), int64(kernel))
	var y string
	for j := range kernel {
		// Tap j reads x[t−(kernel−1)+j]: cat[j : len−(kernel−1−j)].
		end := -(keep - int64(j))
		if end == 0 {
			end = 1 << 62
		}
		xs := cs.Op("Slice", []string{cat, ex.Int64s(int64(j)), ex.Int64s(end), axis})
		wj := cs.Op("Slice", []string{w, ex.Int64s(int64(j)), ex.Int64s(int64(j) + 1), ex.Int64s(1)}) // [width, 1]
		t := cs.Op("Mul", []string{xs, wj})
		if y == "" {
			y = t
		} else {
			y = cs.Op("Add", []string{y, t})
		}
	}
	y = cs.Op("Transpose", []string{y}, graph.AttrInts("perm", 0, 2, 1)) // [batch, seq, width]
	return ex.linear(s.In("out_proj"), module+".out_proj", y, width, width, false, "")
}
