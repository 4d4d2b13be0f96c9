package models

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// fusedLayouts are the producers' layouts at tiny sizes, each with the
// com.microsoft ops it must hold (op type → count).
var fusedLayouts = []struct {
	name  string
	build func(unfused bool) (*graph.Model, error)
	ops   map[string]int
}{
	{"model-builder-packed", func(u bool) (*graph.Model, error) {
		c := builderTiny()
		c.Builder.PackedQKV, c.Builder.Unfused = true, u
		return Llama(c)
	}, map[string]int{"GroupQueryAttention": 2, "SkipSimplifiedLayerNormalization": 4}},
	{"model-builder-rotary-nodes-fp16", func(u bool) (*graph.Model, error) {
		c := builderTiny()
		c.Builder.RotaryNodes, c.Builder.Unfused, c.DType = true, u, dtype.Float16
		return Llama(c)
	}, map[string]int{"GroupQueryAttention": 2, "RotaryEmbedding": 4, "SkipSimplifiedLayerNormalization": 4}},
	{"optimizer-gpt2", func(u bool) (*graph.Model, error) {
		c := GPT2Tiny()
		c.Producer, c.Optimizer.Unfused = TransformerOptimizer, u
		return GPT2(c)
	}, map[string]int{"EmbedLayerNormalization": 1, "Attention": 2, "SkipLayerNormalization": 4, "FastGelu": 2}},
	{"optimizer-bert", func(u bool) (*graph.Model, error) {
		c := BERTTiny()
		c.Producer, c.Optimizer.Unfused = TransformerOptimizer, u
		return BERT(c)
	}, map[string]int{"EmbedLayerNormalization": 1, "Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2}},
}

// TestFusedLayouts checks each producer layout against its twin: the
// fused graph holds its fused ops (and SimplifiedLayerNormalization, the
// one standard op the model builder adds), the twin none; both hold the
// same initializers, byte for byte, and the same MatMul nodes under the
// same names reading the same weights, so that LoRA lands on the same
// layers of both.
func TestFusedLayouts(t *testing.T) {
	for _, tc := range fusedLayouts {
		t.Run(tc.name, func(t *testing.T) {
			fused, err := tc.build(false)
			if err != nil {
				t.Fatal(err)
			}
			twin, err := tc.build(true)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, n := range fused.Graph().Node {
				if n.Domain == "com.microsoft" {
					got[n.OpType]++
				} else if !slices.Contains(allowedOps, n.OpType) && n.OpType != "SimplifiedLayerNormalization" && n.OpType != "ReduceSum" && n.OpType != "Less" {
					t.Errorf("fused node %q: unexpected op %s", n.Name, n.OpType)
				}
			}
			for op, want := range tc.ops {
				if got[op] != want {
					t.Errorf("fused graph: %d %s nodes, want %d", got[op], op, want)
				}
			}
			for op := range got {
				if _, ok := tc.ops[op]; !ok {
					t.Errorf("fused graph: unexpected com.microsoft %s", op)
				}
			}
			for _, n := range twin.Graph().Node {
				if n.Domain != "" || n.OpType == "SimplifiedLayerNormalization" {
					t.Errorf("twin node %q: fused op %s.%s", n.Name, n.Domain, n.OpType)
				}
			}
			if a, b := initializerBytes(t, fused), initializerBytes(t, twin); !equalMaps(a, b) {
				t.Errorf("fused and twin initializers differ: %v vs %v", sortedKeys(a), sortedKeys(b))
			}
			// The twin has every MatMul of the fused graph, and one more per
			// Attention node: the packed QKV projection that Attention does
			// inside.
			packed := map[string]bool{}
			for _, n := range fused.Graph().Node {
				if n.OpType == "Attention" {
					packed[n.Input[1]] = true
				}
			}
			fm, tm := matmuls(fused), matmuls(twin)
			for name, w := range tm {
				if fw, ok := fm[name]; ok && fw != w {
					t.Errorf("MatMul %q reads %q in the fused graph, %q in the twin", name, fw, w)
				} else if !ok && !packed[w] {
					t.Errorf("twin MatMul %q (%q) is not in the fused graph", name, w)
				}
			}
			for name := range fm {
				if _, ok := tm[name]; !ok {
					t.Errorf("fused MatMul %q is not in the twin", name)
				}
			}
			if err := fused.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

// initializerBytes returns each initializer's type, shape and data.
func initializerBytes(t *testing.T, m *graph.Model) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, init := range m.Graph().Initializer {
		b, err := m.TensorBytes(init)
		if err != nil {
			t.Fatal(err)
		}
		out[init.Name] = graph.TypeOf(init).String() + string(rune(len(init.Dims))) + string(b)
	}
	return out
}

// matmuls maps each MatMul node that reads an initializer to it.
func matmuls(m *graph.Model) map[string]string {
	out := map[string]string{}
	for _, n := range m.Graph().Node {
		if n.OpType == "MatMul" && m.Initializer(n.Input[1]) != nil {
			out[n.Name] = n.Input[1]
		}
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal([]byte(v), []byte(w)) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// TestFusedNames pins the names the producers give the nodes and weights
// that LoRA targets and that training feeds.
func TestFusedNames(t *testing.T) {
	build := func(b func(bool) (*graph.Model, error)) *graph.Model {
		m, err := b(false)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	mb, gpt2, bert := build(fusedLayouts[0].build), build(fusedLayouts[2].build), build(fusedLayouts[3].build)
	c := builderTiny()
	sep := c
	sep.Builder.RotaryNodes = true
	separate, err := Llama(sep)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		m      *graph.Model
		node   string
		op     string
		inputs []string // a subset of the node's inputs, in any order
	}{
		{mb, "/model/embed_tokens/Gather", "Gather", []string{"model.embed_tokens.weight", "input_ids"}},
		{mb, "/model/layers.0/input_layernorm/LayerNorm", "SimplifiedLayerNormalization", []string{"/model/embed_tokens/Gather/output_0", "model.layers.0.input_layernorm.weight"}},
		{mb, "/model/layers.0/attn/qkv_proj/MatMul", "MatMul", []string{"/model/layers.0/input_layernorm/output_0", "model.layers.0.attn.qkv_proj.MatMul.weight"}},
		{mb, "/model/layers.0/attn/GroupQueryAttention", "GroupQueryAttention", []string{"/model/layers.0/attn/qkv_proj/MatMul/output_0", "past_key_values.0.key", "past_key_values.0.value",
			"/model/attn_mask_reformat/attn_mask_subgraph/Sub/Cast/output_0", "/model/attn_mask_reformat/attn_mask_subgraph/Gather/Cast/output_0", "cos_cache", "sin_cache"}},
		{mb, "/model/layers.0/attn/o_proj/MatMul", "MatMul", []string{"/model/layers.0/attn/GroupQueryAttention/output_0", "model.layers.0.attn.o_proj.MatMul.weight"}},
		{mb, "/model/layers.0/post_attention_layernorm/SkipLayerNorm", "SkipSimplifiedLayerNormalization", []string{"/model/embed_tokens/Gather/output_0", "/model/layers.0/attn/o_proj/MatMul/output_0"}},
		{mb, "/model/layers.0/mlp/gate_proj/MatMul", "MatMul", []string{"/model/layers.0/post_attention_layernorm/output_0", "model.layers.0.mlp.gate_proj.MatMul.weight"}},
		{mb, "/model/layers.1/mlp/down_proj/MatMul", "MatMul", []string{"/model/layers.1/mlp/Mul/output_0", "model.layers.1.mlp.down_proj.MatMul.weight"}},
		{mb, "/model/layers.1/input_layernorm/SkipLayerNorm", "SkipSimplifiedLayerNormalization", []string{"/model/layers.0/post_attention_layernorm/output_3", "/model/layers.0/mlp/down_proj/MatMul/output_0"}},
		{mb, "/model/layers.2/final_norm_layernorm/SkipLayerNorm", "SkipSimplifiedLayerNormalization", []string{"model.layers.2.final_norm_layernorm.weight"}},
		{mb, "/lm_head/MatMul", "MatMul", []string{"/model/layers.2/final_norm_layernorm/output_0", "lm_head.MatMul.weight"}},
		{mb, "/model/constant_nodes/INT64/[1]", "Constant", nil},
		{separate, "/model/layers.0/attn/k_proj/MatMul", "MatMul", []string{"model.layers.0.attn.k_proj.MatMul.weight"}},
		{separate, "/model/layers.0/attn/k_rotary/RotaryEmbedding", "RotaryEmbedding", []string{"/model/layers.0/attn/k_proj/MatMul/output_0", "position_ids", "cos_cache", "sin_cache"}},
		{separate, "/model/layers.0/attn/GroupQueryAttention", "GroupQueryAttention", []string{"/model/layers.0/attn/q_rotary/RotaryEmbedding/output_0", "/model/layers.0/attn/v_proj/MatMul/output_0"}},
		{gpt2, "EmbedLayerNormalization_0", "EmbedLayerNormalization", []string{"input_ids_int32", "position_ids_int32", "transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight"}},
		{gpt2, "GptAttention_0", "Attention", []string{"EmbedLayerNormalization_0_output", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias", "attention_mask_int32", "past_0"}},
		{gpt2, "GptAttention_1_matmul", "MatMul", []string{"GptAttention_1_output", "transformer.h.1.attn.c_proj.weight"}},
		{gpt2, "SkipLayerNorm_0", "SkipLayerNormalization", []string{"GptAttention_0_matmul_output", "EmbedLayerNormalization_0_embedding_sum", "transformer.h.0.attn.c_proj.bias"}},
		{gpt2, "/transformer/h.0/mlp/c_fc/MatMul", "MatMul", []string{"transformer.h.0.mlp.c_fc.weight"}},
		{gpt2, "FastGelu_AddBias_0", "FastGelu", []string{"/transformer/h.0/mlp/c_fc/MatMul_output_0", "transformer.h.0.mlp.c_fc.bias"}},
		{gpt2, "SkipLayerNorm_3", "SkipLayerNormalization", []string{"transformer.ln_f.weight", "transformer.h.1.mlp.c_proj.bias"}},
		{bert, "EmbedLayerNormalization_0", "EmbedLayerNormalization", []string{"input_ids_int32", "zeros_for_input_shape", "attention_mask_int32", "bert.embeddings.LayerNorm.weight"}},
		{bert, "Attention_0", "Attention", []string{"EmbedLayerNormalization_0_output", "Attention_0_qkv_weight", "Attention_0_qkv_bias", "mask_index"}},
		{bert, "/bert/encoder/layer.0/attention/output/dense/MatMul", "MatMul", []string{"Attention_0_output", "bert.encoder.layer.0.attention.output.dense.weight"}},
		{bert, "Gelu_AddBias_1", "BiasGelu", []string{"bert.encoder.layer.1.intermediate.dense.bias"}},
	}
	for _, tc := range tests {
		n := tc.m.NodeByName(tc.node)
		if n == nil {
			t.Errorf("no node %q", tc.node)
			continue
		}
		if n.OpType != tc.op {
			t.Errorf("node %q: got op %s want %s", tc.node, n.OpType, tc.op)
		}
		for _, in := range tc.inputs {
			if !slices.Contains(n.Input, in) {
				t.Errorf("node %q reads %v, want it to read %q", tc.node, n.Input, in)
			}
		}
	}
	if w := bert.Initializer("Attention_0_qkv_weight"); w == nil || !slices.Equal(w.Dims, []int64{16, 48}) {
		t.Errorf("Attention_0_qkv_weight: got %v want [16 48]", w.GetDims())
	}
	if w := mb.Initializer("model.layers.0.attn.qkv_proj.MatMul.weight"); w == nil || !slices.Equal(w.Dims, []int64{64, 128}) {
		t.Errorf("qkv_proj weight: got %v want [64 128] (q 64 + k 32 + v 32)", w.GetDims())
	}
}

// TestModelBuilderNamesMatchRealExport holds the model-builder layout to a
// real model-builder export in ../shared/models (an older builder, with
// MultiHeadAttention where ours has GroupQueryAttention): every linear
// layer, norm and rotary node of the real model exists in ours under the
// same name, with the same op, reading weights of the same names and
// writing values of the same names; the inputs and outputs are the same.
func TestModelBuilderNamesMatchRealExport(t *testing.T) {
	p := filepath.Join("..", "..", "shared", "models", "tiny-llama-genai-fp16", "model.onnx")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared model not available: %v", err)
	}
	real, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	c := LlamaConfig{Core: Core{VocabSize: 32000, Hidden: 16, Layers: 2, Heads: 1, Seed: 1}, KVHeads: 1, Intermediate: 64, DType: dtype.Float16, Producer: ModelBuilder, Builder: ModelBuilderOptions{RotaryNodes: true}}
	ours, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, n := range real.Graph().Node {
		switch n.OpType {
		case "MatMul", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "RotaryEmbedding", "Gather", "Sigmoid":
		default:
			continue
		}
		if n.OpType == "Gather" && n.Name != "/model/embed_tokens/Gather" {
			continue
		}
		o := ours.NodeByName(n.Name)
		if o == nil {
			t.Errorf("real node %q (%s) is missing from ours", n.Name, n.OpType)
			continue
		}
		checked++
		if o.OpType != n.OpType || o.Domain != n.Domain {
			t.Errorf("node %q: ours is %s.%s, the real one %s.%s", n.Name, o.Domain, o.OpType, n.Domain, n.OpType)
		}
		for _, in := range n.Input {
			if real.Initializer(in) != nil && !slices.Contains(o.Input, in) {
				t.Errorf("node %q: the real one reads weight %q, ours reads %v", n.Name, in, o.Input)
			}
		}
		if !slices.Equal(o.Output, n.Output) {
			t.Errorf("node %q: ours writes %v, the real one %v", n.Name, o.Output, n.Output)
		}
		if n.OpType == "RotaryEmbedding" && !slices.Equal(o.Input, n.Input) {
			t.Errorf("node %q: ours reads %v, the real one %v", n.Name, o.Input, n.Input)
		}
	}
	if checked < 20 {
		t.Errorf("only %d nodes compared", checked)
	}
	names := func(m *graph.Model, inputs bool) []string {
		var out []string
		vs := m.Graph().Output
		if inputs {
			vs = m.Graph().Input
		}
		for _, v := range vs {
			out = append(out, v.Name)
		}
		sort.Strings(out)
		return out
	}
	for _, inputs := range []bool{true, false} {
		if a, b := names(ours, inputs), names(real, inputs); !slices.Equal(a, b) {
			t.Errorf("interface (inputs %v): ours %v, the real one %v", inputs, a, b)
		}
	}
	for _, init := range real.Graph().Initializer {
		if ours.Initializer(init.Name) == nil {
			t.Errorf("real weight %q is missing from ours", init.Name)
		}
	}
}

func TestFusedValidate(t *testing.T) {
	tests := []struct {
		reason string
		err    error
	}{
		{"packed and rotary nodes", func() error {
			c := builderTiny()
			c.Builder.PackedQKV, c.Builder.RotaryNodes = true, true
			return c.Validate()
		}()},
		{"llama from the optimizer", func() error { c := LlamaTiny(); c.Producer = TransformerOptimizer; return c.Validate() }()},
		{"gpt2 from the model builder", func() error { c := GPT2Tiny(); c.Producer = ModelBuilder; return c.Validate() }()},
		{"optimized gemm", func() error { c := GPT2Tiny(); c.Producer, c.Gemm = TransformerOptimizer, true; return c.Validate() }()},
		{"gpt2 raw mask", func() error {
			c := GPT2Tiny()
			c.Producer, c.Optimizer.RawMask = TransformerOptimizer, true
			return c.Validate()
		}()},
		{"bert decomposed", func() error {
			c := BERTTiny()
			c.Producer, c.DecomposeLayerNorm = TransformerOptimizer, true
			return c.Validate()
		}()},
		{"bert from the model builder", func() error { c := BERTTiny(); c.Producer = ModelBuilder; return c.Validate() }()},
		{"optimized bert with int32 ids", func() error {
			c := BERTTiny()
			c.Producer, c.IDType = TransformerOptimizer, dtype.Int32
			return c.Validate()
		}()},
	}
	for _, tc := range tests {
		if tc.err == nil {
			t.Errorf("%s: got no error", tc.reason)
		}
	}
}
