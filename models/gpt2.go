package models

import (
	"cmp"
	"encoding/binary"
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// GPT2Config sizes a GPT-2-style decoder. Zero values of the optional
// fields take the defaults given beside them.
type GPT2Config struct {
	Core
	Intermediate int // MLP width; 0 means 4·Hidden
	MaxPositions int // rows of the position table; 0 means 1024

	LayerNormEps float64 // 0 means 1e-5

	// NoCache leaves out the past_key_values.{i}.key/value inputs and the
	// present.{i}.key/value outputs.
	NoCache bool
	// Gemm lays each linear layer of the blocks out as torch exports an
	// nn.Linear on a flattened input: Reshape → Gemm(transB=1) → Reshape,
	// with the weight stored [out, in]. Otherwise a linear layer is
	// MatMul + Add with the weight [in, out], as GPT-2's Conv1D stores it.
	Gemm bool
	// DecomposeLayerNorm writes LayerNorm as ReduceMean, Sub, Pow, … instead
	// of one LayerNormalization node.
	DecomposeLayerNorm bool
	// AnonymousNodes names nodes OpType_N, as old exporters did, so that
	// only the weights' names tell the modules apart.
	AnonymousNodes bool

	// Producer is whose export the graph imitates: Optimum (the default)
	// or TransformerOptimizer. The weights' values do not depend on it.
	Producer Producer
	// Optimizer shapes a TransformerOptimizer graph; Optimum ignores it.
	Optimizer OptimizerOptions
}

// GPT2Tiny is the size the tests use: hidden 16, 2 layers, 4 heads,
// vocabulary 32.
func GPT2Tiny() GPT2Config {
	return GPT2Config{Core: Core{VocabSize: 32, Hidden: 16, Layers: 2, Heads: 4, Seed: 1}, Intermediate: 40, MaxPositions: 64}
}

// GPT2Mini is a demo size: hidden 64, 2 layers, 4 heads, vocabulary 256.
func GPT2Mini() GPT2Config {
	return GPT2Config{Core: Core{VocabSize: 256, Hidden: 64, Layers: 2, Heads: 4, Seed: 1}, MaxPositions: 256}
}

// GPT2Base has the sizes of HuggingFace's "gpt2" (GPT-2 small), for
// benchmarks: hidden 768, 12 layers, 12 heads, MLP 3072, vocabulary 50257,
// 1024 positions; 163M weights with the untied copy of the head
// (650 MB in float32).
func GPT2Base() GPT2Config {
	return GPT2Config{Core: Core{VocabSize: 50257, Hidden: 768, Layers: 12, Heads: 12, Seed: 1}, Intermediate: 3072, MaxPositions: 1024}
}

func (c GPT2Config) withDefaults() GPT2Config {
	c.Intermediate = cmp.Or(c.Intermediate, 4*c.Hidden)
	c.MaxPositions = cmp.Or(c.MaxPositions, 1024)
	c.LayerNormEps = cmp.Or(c.LayerNormEps, 1e-5)
	c.InitStd = cmp.Or(c.InitStd, defaultInitStd)
	return c
}

// Validate reports a config that cannot be built.
func (c GPT2Config) Validate() error {
	c = c.withDefaults()
	if err := c.Core.validate("gpt2"); err != nil {
		return err
	}
	switch {
	case c.Intermediate <= 0 || c.MaxPositions <= 0:
		return errorf("gpt2: sizes must be positive: %+v", c)
	case c.LayerNormEps < 0:
		return errorf("gpt2: LayerNormEps must not be negative")
	case c.Producer != Optimum && c.Producer != TransformerOptimizer:
		return errorf("gpt2: producer %s does not build GPT-2 (optimum or transformer-optimizer)", c.Producer)
	case c.Producer == TransformerOptimizer && (c.Gemm || c.DecomposeLayerNorm || c.AnonymousNodes):
		return errorf("gpt2: Gemm, DecomposeLayerNorm and AnonymousNodes shape the Optimum layout; the transformer optimizer's has MatMuls and fused norms")
	case c.Producer == TransformerOptimizer && c.Optimizer.RawMask:
		return errorf("gpt2: RawMask is a BERT option; GPT-2's Attention always reads the raw mask")
	}
	return nil
}

// NumParams returns the number of weights the model holds, the head's copy
// of the token embedding included.
func (c GPT2Config) NumParams() int64 {
	c = c.withDefaults()
	e, f := int64(c.Hidden), int64(c.Intermediate)
	perLayer := 4*e + (e*3*e + 3*e) + (e*e + e) + (e*f + f) + (f*e + e)
	return 2*int64(c.VocabSize)*e + int64(c.MaxPositions)*e + int64(c.Layers)*perLayer + 2*e
}

// GPT2 builds a GPT-2-style decoder with the names of an Optimum export of
// HuggingFace's GPT2LMHeadModel.
//
// Inputs: input_ids [batch, seq] int64, attention_mask [batch, past+seq]
// int64 and, unless NoCache, past_key_values.{i}.key and .value
// [batch, heads, past, head_dim]. Positions are past … past+seq−1, computed
// in the graph. Outputs: logits [batch, seq, vocab] and, unless NoCache,
// present.{i}.key and .value [batch, heads, past+seq, head_dim].
//
// The linear layers of block i are /transformer/h.{i}/attn/c_attn (q, k and
// v fused, then Split), attn/c_proj, mlp/c_fc and mlp/c_proj, each a
// MatMul node <scope>/MatMul and an Add <scope>/Add (or, with Gemm, a node
// <scope>/Gemm), reading transformer.h.{i}.attn.c_attn.weight and .bias.
// The head /lm_head/MatMul reads lm_head.weight [hidden, vocab], which
// holds the transpose of transformer.wte.weight (GPT-2 ties them).
//
// With Producer TransformerOptimizer the graph is ONNX Runtime's GPT-2
// after its transformer optimizer instead, with position_ids and stacked
// past_{i} inputs: see OptimizerOptions.
func GPT2(c GPT2Config) (*graph.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	if c.Producer == TransformerOptimizer {
		return optimizedGPT2(c)
	}
	ex := newExporter("gpt2", dtype.Float32, c.Seed, c.InitStd, c.AnonymousNodes)
	m := ex.Model()
	e, h, d := c.Hidden, c.Heads, c.HeadDim()

	layout := decoderLayout{dt: dtype.Float32, layers: c.Layers, heads: h, dim: d, vocab: c.VocabSize, cache: !c.NoCache}
	layout.addInputs(m, false)

	top := ex.At("/transformer")
	wte := ex.weight("transformer.wte.weight", int64(c.VocabSize), int64(e))
	wpe := ex.weight("transformer.wpe.weight", int64(c.MaxPositions), int64(e))
	mask, qpos := ex.causalMask(top, "input_ids", "attention_mask")
	tok := top.In("wte").Op("Gather", []string{wte, "input_ids"})
	pos := top.Op("Unsqueeze", []string{qpos, ex.Int64s(0)})
	pe := top.In("wpe").Op("Gather", []string{wpe, pos})
	x := top.Op("Add", []string{tok, pe})

	var lead string
	if c.Gemm {
		lead = top.Op("Shape", []string{"input_ids"})
	}
	lin := func(s *graph.Builder, module, x string, in, out int) string {
		if c.Gemm {
			return ex.gemm(s, module, x, lead, in, out, "")
		}
		return ex.linear(s, module, x, in, out, true, "")
	}

	for i := range c.Layers {
		layer := top.In(fmt.Sprintf("h.%d", i))
		module := fmt.Sprintf("transformer.h.%d", i)
		attn, mlp := layer.In("attn"), layer.In("mlp")

		n := ex.layerNorm(layer.In("ln_1"), module+".ln_1", x, e, c.LayerNormEps, c.DecomposeLayerNorm)
		qkv := lin(attn.In("c_attn"), module+".attn.c_attn", n, e, 3*e)
		parts := attn.Node("", "Split", []string{qkv, ex.Int64s(int64(e), int64(e), int64(e))}, 3, graph.AttrInt("axis", -1)).Output
		q := ex.splitHeads(attn, parts[0], h, d)
		k := ex.splitHeads(attn, parts[1], h, d)
		v := ex.splitHeads(attn, parts[2], h, d)
		if !c.NoCache {
			k = opTo(attn, fmt.Sprintf("present.%d.key", i), "Concat", []string{fmt.Sprintf("past_key_values.%d.key", i), k}, graph.AttrInt("axis", 2))
			v = opTo(attn, fmt.Sprintf("present.%d.value", i), "Concat", []string{fmt.Sprintf("past_key_values.%d.value", i), v}, graph.AttrInt("axis", 2))
		}
		a := ex.attention(attn, q, k, v, mask, d, true)
		a = ex.mergeHeads(attn, a, e)
		a = lin(attn.In("c_proj"), module+".attn.c_proj", a, e, e)
		x = layer.Op("Add", []string{x, a})

		n = ex.layerNorm(layer.In("ln_2"), module+".ln_2", x, e, c.LayerNormEps, c.DecomposeLayerNorm)
		f := lin(mlp.In("c_fc"), module+".mlp.c_fc", n, e, c.Intermediate)
		f = ex.geluTanh(mlp.In("act"), f)
		f = lin(mlp.In("c_proj"), module+".mlp.c_proj", f, c.Intermediate, e)
		x = layer.Op("Add", []string{x, f})
	}
	x = ex.layerNorm(top.In("ln_f"), "transformer.ln_f", x, e, c.LayerNormEps, c.DecomposeLayerNorm)
	head := transposeInit(m.Initializer(wte), "lm_head.weight")
	m.AddInitializer(head)
	opTo(ex.At("/lm_head"), "logits", "MatMul", []string{x, head.Name})

	layout.addOutputs(m)
	return ex.finish("gpt2")
}

// transposeInit returns a copy of the 2-D float32 initializer t, transposed
// and called name.
func transposeInit(t *onnxpb.TensorProto, name string) *onnxpb.TensorProto {
	rows, cols := int(t.Dims[0]), int(t.Dims[1])
	raw := make([]byte, len(t.RawData))
	parallelFor(rows, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for c := range cols {
				v := binary.LittleEndian.Uint32(t.RawData[4*(r*cols+c):])
				binary.LittleEndian.PutUint32(raw[4*(c*rows+r):], v)
			}
		}
	})
	return &onnxpb.TensorProto{Name: name, DataType: t.DataType, Dims: []int64{int64(cols), int64(rows)}, RawData: raw}
}
