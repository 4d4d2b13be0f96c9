package autodiff

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// The reference models of package models, with a few of their weights
// (and, for LLaMA, a layer's past keys and values, as prefix tuning
// trains them) as parameters.

// feedModel fills the graph inputs of a models decoder or encoder: batch 2,
// seq 3, past 2, the last token of the second row padded.
func feedModel(g *testGraph, vocab int64) {
	const B, S, P = 2, 3, 2
	for _, v := range g.m.Graph().Input {
		dt, dims, _ := graph.ValueShape(v)
		switch {
		case v.Name == "input_ids":
			ids := make([]int64, B*S)
			for i := range ids {
				ids[i] = g.rng.Int64N(vocab)
			}
			g.feeds[v.Name] = &feed{dims: i64s(B, S), i: ids, elem: dtype.Int64}
		case v.Name == "attention_mask":
			total := int64(S)
			if g.m.Input("past_key_values.0.key") != nil {
				total += P
			}
			mask := make([]int64, B*total)
			for i := range mask {
				mask[i] = 1
			}
			mask[len(mask)-1] = 0
			g.feeds[v.Name] = &feed{dims: i64s(B, total), i: mask, elem: dtype.Int64}
		case v.Name == "position_ids":
			g.feeds[v.Name] = &feed{dims: i64s(B, S), i: i64s(P, P+1, P+2, P, P+1, P+2), elem: dtype.Int64}
		case v.Name == "token_type_ids":
			g.feeds[v.Name] = &feed{dims: i64s(B, S), i: make([]int64, B*S), elem: dtype.Int64}
		case strings.HasPrefix(v.Name, "past_key_values.") && dt == dtype.Float32:
			g.feedFloats(v.Name, i64s(B, dims[1], P, dims[3]), uniform(-1, 1))
		default:
			g.t.Fatalf("input %q not handled", v.Name)
		}
	}
}

func TestReferenceModels(t *testing.T) {
	requireORT(t)
	gpt2Gemm := models.GPT2Tiny()
	gpt2Gemm.Gemm = true
	gpt2Decomposed := models.GPT2Tiny()
	gpt2Decomposed.DecomposeLayerNorm = true
	cases := []struct {
		name   string
		build  func() (*graph.Model, error)
		vocab  int64
		params []string
	}{
		{"llama", func() (*graph.Model, error) { return models.Llama(models.LlamaTiny()) }, 32, []string{
			"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight",
			"model.layers.0.mlp.gate_proj.weight", "model.layers.1.input_layernorm.weight",
			"model.embed_tokens.weight", "past_key_values.0.key", "past_key_values.1.value"}},
		{"gpt2", func() (*graph.Model, error) { return models.GPT2(models.GPT2Tiny()) }, 32, []string{
			"transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_fc.bias",
			"transformer.h.0.ln_2.weight", "transformer.wpe.weight", "past_key_values.0.value"}},
		{"gpt2_gemm", func() (*graph.Model, error) { return models.GPT2(gpt2Gemm) }, 32, []string{
			"transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.bias"}},
		{"gpt2_decomposed_layernorm", func() (*graph.Model, error) { return models.GPT2(gpt2Decomposed) }, 32, []string{
			"transformer.h.0.ln_1.weight", "transformer.h.1.ln_2.bias", "transformer.h.0.attn.c_proj.weight"}},
		{"bert", func() (*graph.Model, error) { return models.BERT(models.BERTTiny()) }, 32, []string{
			"bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.intermediate.dense.weight",
			"bert.embeddings.LayerNorm.weight", "bert.embeddings.word_embeddings.weight"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := c.build()
			if err != nil {
				t.Fatal(err)
			}
			var weights, inputs []string
			for _, p := range c.params {
				if m.Initializer(p) != nil {
					weights = append(weights, p)
				} else {
					inputs = append(inputs, p)
				}
			}
			g := realGraph(t, m, weights...)
			g.rng = rand.New(rand.NewPCG(3, 3))
			feedModel(g, c.vocab)
			for _, p := range inputs {
				if g.feeds[p] == nil {
					t.Fatalf("no input %q", p)
				}
				g.params = append(g.params, p)
			}
			g.check("logits")
		})
	}
}
