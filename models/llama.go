package models

import (
	"cmp"
	"fmt"
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// LlamaConfig sizes a LLaMA-style decoder. Zero values of the optional
// fields take the defaults given beside them.
type LlamaConfig struct {
	Core             // Heads are the query heads
	KVHeads      int // key/value heads (grouped-query attention); Heads divides by it; 0 means Heads
	Intermediate int // width of the gated MLP

	RMSNormEps float64 // 0 means 1e-6
	RopeTheta  float64 // 0 means 10000
	// RopeInterleaved rotates the channel pairs (2j, 2j+1) of each head
	// (GPT-J's rotate_every_two, the model builder's rotary_interleaved=1)
	// rather than the pairs (j, j+dim/2) of its two halves.
	RopeInterleaved bool
	// MaxPositions is the number of rows of the model builder's cos and
	// sin caches (max_position_embeddings); 0 means 2048. The Optimum
	// layout computes its tables from position_ids and ignores it.
	MaxPositions int

	// NoCache leaves out the past_key_values.{i}.key/value inputs and the
	// present.{i}.key/value outputs.
	NoCache bool
	// DType is the element type of weights and activations: dtype.Float32
	// (also dtype.Undefined) or dtype.Float16. A float16 model takes RMSNorm, RoPE and
	// softmax in float32, as HuggingFace does, and its logits and KV cache
	// are float16.
	DType dtype.Type

	// Producer is whose export the graph imitates: Optimum (the default)
	// or ModelBuilder. The weights' values do not depend on it.
	Producer Producer
	// Builder shapes a ModelBuilder graph; Optimum ignores it.
	Builder ModelBuilderOptions
}

// LlamaTiny is the size the tests use: hidden 16, 2 layers, 4 heads over 2
// KV heads, vocabulary 32.
func LlamaTiny() LlamaConfig {
	return LlamaConfig{Core: Core{VocabSize: 32, Hidden: 16, Layers: 2, Heads: 4, Seed: 1}, KVHeads: 2, Intermediate: 40}
}

// LlamaMini is a demo size that trains in seconds on a CPU: hidden 64,
// 2 layers, 4 heads over 2 KV heads, vocabulary 256 (124K parameters).
func LlamaMini() LlamaConfig {
	return LlamaConfig{Core: Core{VocabSize: 256, Hidden: 64, Layers: 2, Heads: 4, Seed: 1}, KVHeads: 2, Intermediate: 172}
}

// LlamaBase has GPT-2 small's sizes, for benchmarks: hidden 768, 12
// layers, 12 heads over 4 KV heads, MLP 3072, vocabulary 50257 (about
// 180M parameters, 720 MB in float32).
func LlamaBase() LlamaConfig {
	return LlamaConfig{Core: Core{VocabSize: 50257, Hidden: 768, Layers: 12, Heads: 12, Seed: 1}, KVHeads: 4, Intermediate: 3072}
}

// Llama500MB holds about 125M parameters, 500 MB of float32 weights, for
// load and save benchmarks: hidden 768, 12 layers, 12 heads over 4 KV
// heads, MLP 2048, vocabulary 32000.
func Llama500MB() LlamaConfig {
	return LlamaConfig{Core: Core{VocabSize: 32000, Hidden: 768, Layers: 12, Heads: 12, Seed: 1}, KVHeads: 4, Intermediate: 2048}
}

// withDefaults fills the optional fields.
func (c LlamaConfig) withDefaults() LlamaConfig {
	c.KVHeads = cmp.Or(c.KVHeads, c.Heads)
	c.RMSNormEps = cmp.Or(c.RMSNormEps, 1e-6)
	c.RopeTheta = cmp.Or(c.RopeTheta, 10000)
	if c.DType == dtype.Undefined {
		c.DType = dtype.Float32
	}
	c.InitStd = cmp.Or(c.InitStd, defaultInitStd)
	c.MaxPositions = cmp.Or(c.MaxPositions, 2048)
	return c
}

// Validate reports a config that cannot be built.
func (c LlamaConfig) Validate() error {
	c = c.withDefaults()
	if err := c.Core.validate("llama"); err != nil {
		return err
	}
	switch {
	case c.KVHeads <= 0 || c.Intermediate <= 0:
		return errorf("llama: sizes must be positive: %+v", c)
	case c.Heads%c.KVHeads != 0:
		return errorf("llama: heads %d is not a multiple of KV heads %d", c.Heads, c.KVHeads)
	case c.HeadDim()%2 != 0:
		return errorf("llama: head dim %d is odd; RoPE needs it even", c.HeadDim())
	case c.DType != dtype.Float32 && c.DType != dtype.Float16:
		return errorf("llama: dtype %s is not float32 or float16", c.DType)
	case c.RMSNormEps < 0 || c.RopeTheta < 0 || c.MaxPositions < 0:
		return errorf("llama: RMSNormEps, RopeTheta and MaxPositions must not be negative")
	case c.Producer != Optimum && c.Producer != ModelBuilder:
		return errorf("llama: producer %s does not build LLaMA (optimum or model-builder)", c.Producer)
	case c.Producer == ModelBuilder:
		return c.Builder.check(c)
	}
	return nil
}

// NumParams returns the number of weights the model holds.
func (c LlamaConfig) NumParams() int64 {
	c = c.withDefaults()
	e, d := int64(c.Hidden), int64(c.HeadDim())
	kv := int64(c.KVHeads) * d
	perLayer := e*e + 2*e*kv + e*e + 3*e*int64(c.Intermediate) + 2*e
	return 2*int64(c.VocabSize)*e + int64(c.Layers)*perLayer + e
}

// Llama builds a LLaMA-style decoder with the names that Optimum gives a
// HuggingFace LlamaForCausalLM export.
//
// Inputs: input_ids [batch, seq] int64, attention_mask [batch, past+seq]
// int64, position_ids [batch, seq] int64, and, unless NoCache,
// past_key_values.{i}.key and .value [batch, kv_heads, past, head_dim].
// Outputs: logits [batch, seq, vocab] and, unless NoCache,
// present.{i}.key and .value [batch, kv_heads, past+seq, head_dim], the
// past with this run's keys (after RoPE) and values appended.
//
// Every linear layer is a MatMul node /model/layers.{i}/self_attn/q_proj/MatMul
// (k_proj, v_proj, o_proj; mlp/gate_proj, up_proj, down_proj) reading its
// weight model.layers.{i}.self_attn.q_proj.weight, stored [in, out]; the
// head is /lm_head/MatMul with lm_head.weight. There are no biases.
//
// With Producer ModelBuilder the graph is the onnxruntime-genai model
// builder's instead: see ModelBuilderOptions.
//
// The model records c in its metadata (LlamaConfigKey), which
// LlamaConfigOf reads back from a file.
func Llama(c LlamaConfig) (*graph.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	var m *graph.Model
	var err error
	if c.Producer == ModelBuilder {
		m, err = modelBuilderLlama(c)
	} else {
		m, err = optimumLlama(c)
	}
	if err != nil {
		return nil, err
	}
	if err := recordLlamaConfig(m, c); err != nil {
		return nil, err
	}
	return m, nil
}

// optimumLlama builds Llama's graph in Optimum's layout from c, its
// defaults filled in.
func optimumLlama(c LlamaConfig) (*graph.Model, error) {
	ex := newExporter("llama", c.DType, c.Seed, c.InitStd, false)
	m := ex.Model()
	e, h, kv, d := c.Hidden, c.Heads, c.KVHeads, c.HeadDim()

	top, x := ex.llamaEmbedding(c, true)
	mask, _ := ex.causalMask(top, "input_ids", "attention_mask")
	cos, sin := ex.rotary(top.In("rotary_emb"), "position_ids", d, c.RopeTheta, c.RopeInterleaved)

	for i := range c.Layers {
		layer := top.In(fmt.Sprintf("layers.%d", i))
		module := fmt.Sprintf("model.layers.%d", i)
		attn, mlp := layer.In("self_attn"), layer.In("mlp")

		q, k, v := ex.llamaQKV(c, layer, module, x, h, kv, cos, sin)
		if !c.NoCache {
			k = opTo(attn, fmt.Sprintf("present.%d.key", i), "Concat", []string{fmt.Sprintf("past_key_values.%d.key", i), k}, graph.AttrInt("axis", 2))
			v = opTo(attn, fmt.Sprintf("present.%d.value", i), "Concat", []string{fmt.Sprintf("past_key_values.%d.value", i), v}, graph.AttrInt("axis", 2))
		}
		k = ex.repeatKV(attn, k, kv, h/kv, d)
		v = ex.repeatKV(attn, v, kv, h/kv, d)
		a := ex.attention(attn, q, k, v, mask, d, false)
		a = ex.mergeHeads(attn, a, h*d)
		a = ex.linear(attn.In("o_proj"), module+".self_attn.o_proj", a, h*d, e, false, "")
		x = layer.Op("Add", []string{x, a})

		n := ex.rmsNorm(layer.In("post_attention_layernorm"), module+".post_attention_layernorm", x, e, c.RMSNormEps)
		x = layer.Op("Add", []string{x, ex.swiGLU(mlp, module+".mlp", n, e, c.Intermediate)})
	}
	x = ex.rmsNorm(top.In("norm"), "model.norm", x, e, c.RMSNormEps)
	ex.linear(ex.At("/lm_head"), "lm_head", x, e, c.VocabSize, false, "logits")

	c.layout().addOutputs(m)
	return ex.finish("llama")
}

// layout is the interface of c's graph.
func (c LlamaConfig) layout() decoderLayout {
	return decoderLayout{dt: c.DType, layers: c.Layers, heads: c.KVHeads, dim: c.HeadDim(), vocab: c.VocabSize, cache: !c.NoCache}
}

// llamaEmbedding adds the inputs of a LLaMA decoder of c to the model:
// input_ids, attention_mask, position_ids where positions is set, and
// unless c.NoCache the past_key_values; and returns the scope /model and
// the token embedding, model.embed_tokens of input_ids, in it.
func (ex *exporter) llamaEmbedding(c LlamaConfig, positions bool) (top *graph.Builder, x string) {
	c.layout().addInputs(ex.Model(), positions)
	top = ex.At("/model")
	emb := ex.weight("model.embed_tokens.weight", int64(c.VocabSize), int64(c.Hidden))
	return top, top.In("embed_tokens").Op("Gather", []string{emb, "input_ids"})
}

// swiGLU adds a LLaMA MLP on x [.., width] in scope s for module:
// down_proj(silu(gate_proj(x))·up_proj(x)), silu in s/act_fn.
func (ex *exporter) swiGLU(s *graph.Builder, module, x string, width, intermediate int) string {
	g := ex.linear(s.In("gate_proj"), module+".gate_proj", x, width, intermediate, false, "")
	act := s.In("act_fn")
	g = act.Op("Mul", []string{g, act.Op("Sigmoid", []string{g})})
	u := ex.linear(s.In("up_proj"), module+".up_proj", x, width, intermediate, false, "")
	g = s.Op("Mul", []string{g, u})
	return ex.linear(s.In("down_proj"), module+".down_proj", g, intermediate, width, false, "")
}

// rotary adds the cos and sin tables of RoPE for position_ids [batch, seq]:
// freqs = position·θ^(−2j/dim) for j < dim/2, emb = [freqs, freqs]
// (each frequency twice in a row when interleaved), and returns cos(emb)
// and sin(emb) as [batch, 1, seq, dim], computed in float32 and cast to
// the model's type.
func (ex *exporter) rotary(s *graph.Builder, positionIDs string, dim int, theta float64, interleaved bool) (cos, sin string) {
	inv := make([]float64, dim/2)
	for j := range inv {
		inv[j] = 1 / math.Pow(theta, float64(2*j)/float64(dim))
	}
	pos := s.Op("Cast", []string{positionIDs}, graph.AttrInt("to", int64(dtype.Float32)))
	pos = s.Op("Unsqueeze", []string{pos, ex.Int64s(-1)})
	freqs := s.Op("Mul", []string{pos, ex.Floats(dtype.Float32, []int64{int64(len(inv))}, inv)})
	var emb string
	if interleaved {
		f := s.Op("Unsqueeze", []string{freqs, ex.Int64s(-1)})
		emb = s.Op("Concat", []string{f, f}, graph.AttrInt("axis", -1))
		emb = s.Op("Reshape", []string{emb, ex.Int64s(0, 0, int64(dim))})
	} else {
		emb = s.Op("Concat", []string{freqs, freqs}, graph.AttrInt("axis", -1))
	}
	cos = s.Op("Cos", []string{emb})
	sin = s.Op("Sin", []string{emb})
	cos = castTo(s, cos, dtype.Float32, ex.elem)
	sin = castTo(s, sin, dtype.Float32, ex.elem)
	cos = s.Op("Unsqueeze", []string{cos, ex.Int64s(1)})
	sin = s.Op("Unsqueeze", []string{sin, ex.Int64s(1)})
	return cos, sin
}

// llamaQKV adds the input_layernorm of LLaMA layer scope (module its
// weights' prefix) on x and the q, k, v projections of its self_attn, h
// query and kv key/value heads of c's head dim; q and k are rotated with
// cos and sin. It returns q, k and v split into heads.
func (ex *exporter) llamaQKV(c LlamaConfig, layer *graph.Builder, module, x string, h, kv int, cos, sin string) (q, k, v string) {
	e, d := c.Hidden, c.HeadDim()
	attn := layer.In("self_attn")
	n := ex.rmsNorm(layer.In("input_layernorm"), module+".input_layernorm", x, e, c.RMSNormEps)
	q = ex.linear(attn.In("q_proj"), module+".self_attn.q_proj", n, e, h*d, false, "")
	k = ex.linear(attn.In("k_proj"), module+".self_attn.k_proj", n, e, kv*d, false, "")
	v = ex.linear(attn.In("v_proj"), module+".self_attn.v_proj", n, e, kv*d, false, "")
	q = ex.rope(attn, ex.splitHeads(attn, q, h, d), cos, sin, d, c.RopeInterleaved)
	k = ex.rope(attn, ex.splitHeads(attn, k, kv, d), cos, sin, d, c.RopeInterleaved)
	return q, k, ex.splitHeads(attn, v, kv, d)
}

// rope applies the rotation to x [batch, heads, seq, dim]:
// x·cos + rotate(x)·sin, where rotate(x) = [−x₂, x₁] for the two halves
// x₁, x₂ of the last axis, or, interleaved, (−x₂ⱼ₊₁, x₂ⱼ) for each pair.
func (ex *exporter) rope(s *graph.Builder, x, cos, sin string, dim int, interleaved bool) string {
	var rot string
	if interleaved {
		pairs := s.Op("Reshape", []string{x, ex.Int64s(0, 0, 0, int64(dim/2), 2)})
		parts := s.Node("", "Split", []string{pairs, ex.Int64s(1, 1)}, 2, graph.AttrInt("axis", -1)).Output
		rot = s.Op("Concat", []string{s.Op("Neg", []string{parts[1]}), parts[0]}, graph.AttrInt("axis", -1))
		rot = s.Op("Reshape", []string{rot, ex.Int64s(0, 0, 0, int64(dim))})
	} else {
		half, axis := int64(dim/2), ex.Int64s(-1)
		x1 := s.Op("Slice", []string{x, ex.Int64s(0), ex.Int64s(half), axis})
		x2 := s.Op("Slice", []string{x, ex.Int64s(half), ex.Int64s(int64(dim)), axis})
		rot = s.Op("Concat", []string{s.Op("Neg", []string{x2}), x1}, graph.AttrInt("axis", -1))
	}
	xc := s.Op("Mul", []string{x, cos})
	rs := s.Op("Mul", []string{rot, sin})
	return s.Op("Add", []string{xc, rs})
}
