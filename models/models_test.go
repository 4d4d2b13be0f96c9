package models

import (
	"bytes"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// builders builds each family at its tiny size, with its variants.
var builders = []struct {
	name   string
	build  func() (*graph.Model, error)
	params int64
}{
	{"llama", func() (*graph.Model, error) { return Llama(LlamaTiny()) }, LlamaTiny().NumParams()},
	{"llama-nocache", func() (*graph.Model, error) { c := LlamaTiny(); c.NoCache = true; return Llama(c) }, LlamaTiny().NumParams()},
	{"llama-mha", func() (*graph.Model, error) { c := LlamaTiny(); c.KVHeads = 0; return Llama(c) }, func() int64 { c := LlamaTiny(); c.KVHeads = 0; return c.NumParams() }()},
	{"llama-fp16", func() (*graph.Model, error) { c := LlamaTiny(); c.DType = dtype.Float16; return Llama(c) }, LlamaTiny().NumParams()},
	{"gpt2", func() (*graph.Model, error) { return GPT2(GPT2Tiny()) }, GPT2Tiny().NumParams()},
	{"gpt2-gemm", func() (*graph.Model, error) { c := GPT2Tiny(); c.Gemm = true; return GPT2(c) }, GPT2Tiny().NumParams()},
	{"gpt2-anon", func() (*graph.Model, error) { c := GPT2Tiny(); c.AnonymousNodes = true; return GPT2(c) }, GPT2Tiny().NumParams()},
	{"gpt2-decomposed", func() (*graph.Model, error) { c := GPT2Tiny(); c.DecomposeLayerNorm = true; return GPT2(c) }, GPT2Tiny().NumParams()},
	{"bert", func() (*graph.Model, error) { return BERT(BERTTiny()) }, BERTTiny().NumParams()},
	{"bert-types", func() (*graph.Model, error) { c := BERTTiny(); c.TokenTypeIDs = true; return BERT(c) }, BERTTiny().NumParams()},
}

// allowedOps is the op set the package promises (see the package doc).
var allowedOps = []string{
	"MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "ReduceMean", "Softmax", "Sigmoid", "Tanh", "Erf",
	"Cos", "Sin", "LayerNormalization", "Gemm", "Gather", "Reshape", "Transpose", "Concat", "Split", "Slice",
	"Unsqueeze", "Expand", "Cast", "Where", "And", "LessOrEqual", "Shape", "Range", "ConstantOfShape", "Constant",
}

func TestBuild(t *testing.T) {
	for _, tc := range builders {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Opset(""); got != Opset {
				t.Errorf("opset: got %d want %d", got, Opset)
			}
			for _, n := range m.Graph().Node {
				if n.Domain != "" || !slices.Contains(allowedOps, n.OpType) {
					t.Errorf("node %q: op %s.%s is outside the promised set", n.Name, n.Domain, n.OpType)
				}
			}
			w, err := WeightsOf(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.NumParams(); got != tc.params {
				t.Errorf("parameters: got %d want %d (NumParams)", got, tc.params)
			}
			if len(w) != len(m.Graph().Initializer) {
				t.Errorf("%d weights but %d initializers: only weights should be initializers", len(w), len(m.Graph().Initializer))
			}
		})
	}
}

// TestNames checks the linear layers' node and weight names, the contract
// that lets an adapter trained on a HuggingFace model land on these graphs.
func TestNames(t *testing.T) {
	llama, err := Llama(LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	gpt2, err := GPT2(GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	gemmCfg := GPT2Tiny()
	gemmCfg.Gemm = true
	gemm, err := GPT2(gemmCfg)
	if err != nil {
		t.Fatal(err)
	}
	bert, err := BERT(BERTTiny())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		m           *graph.Model
		node, op    string
		weight      string
		weightShape []int64
		bias        string // read by the node itself (Gemm) or by the next Add
		transB      bool
	}{
		{llama, "/model/embed_tokens/Gather", "Gather", "model.embed_tokens.weight", []int64{32, 16}, "", false},
		{llama, "/model/layers.0/self_attn/q_proj/MatMul", "MatMul", "model.layers.0.self_attn.q_proj.weight", []int64{16, 16}, "", false},
		{llama, "/model/layers.0/self_attn/k_proj/MatMul", "MatMul", "model.layers.0.self_attn.k_proj.weight", []int64{16, 8}, "", false},
		{llama, "/model/layers.1/self_attn/v_proj/MatMul", "MatMul", "model.layers.1.self_attn.v_proj.weight", []int64{16, 8}, "", false},
		{llama, "/model/layers.1/self_attn/o_proj/MatMul", "MatMul", "model.layers.1.self_attn.o_proj.weight", []int64{16, 16}, "", false},
		{llama, "/model/layers.0/mlp/gate_proj/MatMul", "MatMul", "model.layers.0.mlp.gate_proj.weight", []int64{16, 40}, "", false},
		{llama, "/model/layers.0/mlp/up_proj/MatMul", "MatMul", "model.layers.0.mlp.up_proj.weight", []int64{16, 40}, "", false},
		{llama, "/model/layers.0/mlp/down_proj/MatMul", "MatMul", "model.layers.0.mlp.down_proj.weight", []int64{40, 16}, "", false},
		{llama, "/lm_head/MatMul", "MatMul", "lm_head.weight", []int64{16, 32}, "", false},
		{gpt2, "/transformer/wte/Gather", "Gather", "transformer.wte.weight", []int64{32, 16}, "", false},
		{gpt2, "/transformer/h.0/attn/c_attn/MatMul", "MatMul", "transformer.h.0.attn.c_attn.weight", []int64{16, 48}, "transformer.h.0.attn.c_attn.bias", false},
		{gpt2, "/transformer/h.1/attn/c_proj/MatMul", "MatMul", "transformer.h.1.attn.c_proj.weight", []int64{16, 16}, "transformer.h.1.attn.c_proj.bias", false},
		{gpt2, "/transformer/h.0/mlp/c_fc/MatMul", "MatMul", "transformer.h.0.mlp.c_fc.weight", []int64{16, 40}, "transformer.h.0.mlp.c_fc.bias", false},
		{gpt2, "/transformer/h.0/mlp/c_proj/MatMul", "MatMul", "transformer.h.0.mlp.c_proj.weight", []int64{40, 16}, "transformer.h.0.mlp.c_proj.bias", false},
		{gpt2, "/lm_head/MatMul", "MatMul", "lm_head.weight", []int64{16, 32}, "", false},
		{gemm, "/transformer/h.0/attn/c_attn/Gemm", "Gemm", "transformer.h.0.attn.c_attn.weight", []int64{48, 16}, "transformer.h.0.attn.c_attn.bias", true},
		{gemm, "/transformer/h.0/mlp/c_fc/Gemm", "Gemm", "transformer.h.0.mlp.c_fc.weight", []int64{40, 16}, "transformer.h.0.mlp.c_fc.bias", true},
		{bert, "/bert/encoder/layer.0/attention/self/query/MatMul", "MatMul", "bert.encoder.layer.0.attention.self.query.weight", []int64{16, 16}, "bert.encoder.layer.0.attention.self.query.bias", false},
		{bert, "/bert/encoder/layer.1/attention/self/key/MatMul", "MatMul", "bert.encoder.layer.1.attention.self.key.weight", []int64{16, 16}, "bert.encoder.layer.1.attention.self.key.bias", false},
		{bert, "/bert/encoder/layer.0/attention/self/value/MatMul", "MatMul", "bert.encoder.layer.0.attention.self.value.weight", []int64{16, 16}, "bert.encoder.layer.0.attention.self.value.bias", false},
		{bert, "/bert/encoder/layer.0/attention/output/dense/MatMul", "MatMul", "bert.encoder.layer.0.attention.output.dense.weight", []int64{16, 16}, "bert.encoder.layer.0.attention.output.dense.bias", false},
		{bert, "/bert/encoder/layer.0/intermediate/dense/MatMul", "MatMul", "bert.encoder.layer.0.intermediate.dense.weight", []int64{16, 40}, "bert.encoder.layer.0.intermediate.dense.bias", false},
		{bert, "/bert/encoder/layer.0/output/dense/MatMul", "MatMul", "bert.encoder.layer.0.output.dense.weight", []int64{40, 16}, "bert.encoder.layer.0.output.dense.bias", false},
		{bert, "/bert/pooler/dense/MatMul", "MatMul", "bert.pooler.dense.weight", []int64{16, 16}, "bert.pooler.dense.bias", false},
		{bert, "/classifier/MatMul", "MatMul", "classifier.weight", []int64{16, 3}, "classifier.bias", false},
	}
	for i, tc := range tests {
		n := tc.m.NodeByName(tc.node)
		if n == nil {
			t.Errorf("test %d: no node %q", i, tc.node)
			continue
		}
		if n.OpType != tc.op {
			t.Errorf("test %d: node %q: got op %s want %s", i, tc.node, n.OpType, tc.op)
		}
		if !slices.Contains(n.Input, tc.weight) {
			t.Errorf("test %d: node %q reads %v, want it to read %q", i, tc.node, n.Input, tc.weight)
		}
		w := tc.m.Initializer(tc.weight)
		if w == nil || !slices.Equal(w.Dims, tc.weightShape) {
			t.Errorf("test %d: weight %q: got %v want shape %v", i, tc.weight, w.GetDims(), tc.weightShape)
		}
		if got := graph.IntAttr(n, "transB", 0) == 1; got != tc.transB {
			t.Errorf("test %d: node %q: got transB %v want %v", i, tc.node, got, tc.transB)
		}
		if tc.bias == "" || tc.op == "Gemm" {
			if tc.op == "Gemm" && !slices.Contains(n.Input, tc.bias) {
				t.Errorf("test %d: Gemm %q does not read bias %q", i, tc.node, tc.bias)
			}
			continue
		}
		cs := tc.m.Consumers(n.Output[0])
		if len(cs) != 1 || cs[0].OpType != "Add" || !slices.Contains(cs[0].Input, tc.bias) {
			t.Errorf("test %d: the output of %q should go to one Add with %q", i, tc.node, tc.bias)
		}
	}
}

func TestDeterministic(t *testing.T) {
	marshal := func(seed uint64) []byte {
		c := LlamaTiny()
		c.Seed = seed
		m, err := Llama(c)
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b, other := marshal(7), marshal(7), marshal(8)
	if !bytes.Equal(a, b) {
		t.Error("two builds with the same seed differ")
	}
	if bytes.Equal(a, other) {
		t.Error("builds with seeds 7 and 8 are the same")
	}
}

// TestWeightsIndependentOfLayers checks that a weight depends on the seed
// and its name only.
func TestWeightsIndependentOfLayers(t *testing.T) {
	c := LlamaTiny()
	m2, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Layers = 3
	m3, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := WeightsOf(m2)
	w3, _ := WeightsOf(m3)
	for name, t2 := range w2 {
		if !slices.Equal(t2.Data, w3[name].Data) {
			t.Errorf("weight %q changes with the number of layers", name)
		}
	}
}

func TestParallelFillMatchesSequential(t *testing.T) {
	const n = 5*parallelChunk + 3
	seq := make([]float32, n)
	fillNormal(seq, 42, 0, 0, 1)
	par := normalBytes(n, dtype.Float32, 42, 0, 1)
	tp := graph.NewFloat32Tensor("x", dtype.Float32, []int64{n}, seq)
	if !bytes.Equal(tp.RawData, par) {
		t.Fatal("the parallel fill differs from the sequential one")
	}
	var sum, sq float64
	for _, v := range seq {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean, variance := sum/n, sq/n-(sum/n)*(sum/n)
	if mean < -0.01 || mean > 0.01 || variance < 0.98 || variance > 1.02 {
		t.Errorf("got mean %g variance %g, want about 0 and 1", mean, variance)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		reason string
		err    error
	}{
		{"hidden not a multiple of heads", func() error { c := LlamaTiny(); c.Hidden = 18; return c.Validate() }()},
		{"heads not a multiple of kv heads", func() error { c := LlamaTiny(); c.KVHeads = 3; return c.Validate() }()},
		{"odd head dim", func() error { c := LlamaTiny(); c.Hidden, c.Heads, c.KVHeads = 12, 4, 4; return c.Validate() }()},
		{"bad dtype", func() error { c := LlamaTiny(); c.DType = dtype.Int64; return c.Validate() }()},
		{"zero layers", func() error { c := GPT2Tiny(); c.Layers = 0; return c.Validate() }()},
		{"negative labels", func() error { c := BERTTiny(); c.NumLabels = -1; return c.Validate() }()},
	}
	for _, tc := range tests {
		if tc.err == nil {
			t.Errorf("%s: got no error", tc.reason)
		}
	}
	for _, err := range []error{LlamaTiny().Validate(), GPT2Tiny().Validate(), BERTTiny().Validate(), Llama500MB().Validate()} {
		if err != nil {
			t.Errorf("preset: %v", err)
		}
	}
}
