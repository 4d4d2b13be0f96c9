package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// The real models in ../shared/models, exported by other people's tools:
// their gradients, with some of their weights as parameters, against
// finite differences.

// loadShared loads a model under ../shared/models beside the project's
// root, or skips the test when that folder is absent.
func loadShared(t *testing.T, rel string) *graph.Model {
	t.Helper()
	p := filepath.Join("..", "..", "..", "shared", "models", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared model not available: %v", err)
	}
	m, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// realGraph wraps a loaded model in a testGraph whose params are the given
// initializers, fed with their own values.
func realGraph(t *testing.T, m *graph.Model, params ...string) *testGraph {
	t.Helper()
	g := &testGraph{t: t, m: m, dt: dtype.Float32, rng: rand.New(rand.NewPCG(7, 7)), feeds: map[string]*feed{}}
	for _, p := range params {
		init := m.Initializer(p)
		if init == nil {
			t.Fatalf("no initializer %q", p)
		}
		v, err := m.Float32s(init)
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float64, len(v))
		for i, x := range v {
			f[i] = float64(x)
		}
		g.feeds[p] = &feed{dims: init.Dims, f: f, elem: dtype.Float32}
		g.params = append(g.params, p)
	}
	return g
}

func (g *testGraph) feedFloats(name string, dims []int64, gen func(*rand.Rand) float64) {
	if gen == nil {
		gen = uniform(-1, 1)
	}
	v := make([]float64, graph.NumElements(dims))
	for i := range v {
		v[i] = gen(g.rng)
	}
	g.feeds[name] = &feed{dims: dims, f: v, elem: g.dt}
}

// TestGPT2PastTorch: opset 11, nodes out of order, Gemm layers, LayerNorm
// written out with ReduceMean/Pow/Sqrt, the tanh GELU, past inputs.
func TestGPT2PastTorch(t *testing.T) {
	requireORT(t)
	m := loadShared(t, "gpt2-past-torch16/model.onnx")
	g := realGraph(t, m, "h.0.attn.c_attn.weight_resize", "h.3.mlp.c_fc.bias_resize", "h.11.ln_2.weight_resize", "ln_f.bias_resize")
	g.feeds["input_ids"] = &feed{dims: i64s(2, 1), i: i64s(1, 7), elem: dtype.Int64}
	for i := 0; i < 12; i++ {
		g.feedFloats(fmt.Sprintf("past_%d", i), i64s(2, 2, 2, 3, 2), nil)
	}
	g.check("last_state")
}

// TestDistilBERT: opset 11, the Erf GELU, Softmax on axis 3, a Gather on a
// 30522-row embedding (the one-hot path), Where on the attention mask.
func TestDistilBERT(t *testing.T) {
	requireORT(t)
	m := loadShared(t, "distilbert-optimum/model.onnx")
	var weights []string
	for _, init := range m.Graph().Initializer {
		if graph.TypeOf(init).IsFloat() && len(init.Dims) == 2 && init.Dims[0] == 2 && init.Dims[1] == 2 {
			weights = append(weights, init.Name) // a 2×2 projection
			break
		}
	}
	g := realGraph(t, m, append(weights, "distilbert.embeddings.LayerNorm.weight", "pre_classifier.bias")...)
	g.feeds["input_ids"] = &feed{dims: i64s(2, 4), i: i64s(101, 7592, 2088, 102, 101, 2023, 102, 0), elem: dtype.Int64}
	g.feeds["attention_mask"] = &feed{dims: i64s(2, 4), i: i64s(1, 1, 1, 1, 1, 1, 1, 0), elem: dtype.Int64}
	g.check("logits")
}

// TestDistilBERTEmbedding differentiates the word embedding table, where
// a token that occurs twice must collect both gradients.
func TestDistilBERTEmbedding(t *testing.T) {
	requireORT(t)
	m := loadShared(t, "distilbert-optimum/model.onnx")
	var table string
	for _, init := range m.Graph().Initializer {
		if len(init.Dims) == 2 && init.Dims[0] == 30522 {
			table = init.Name
		}
	}
	if table == "" {
		t.Fatal("no word embedding table")
	}
	g := realGraph(t, m, table)
	g.feeds["input_ids"] = &feed{dims: i64s(1, 4), i: i64s(101, 2088, 2088, 102), elem: dtype.Int64}
	g.feeds["attention_mask"] = &feed{dims: i64s(1, 4), i: i64s(1, 1, 1, 1), elem: dtype.Int64}
	g.check("logits")
}

// toFloat32 rewrites a float16 model to float32: initializers, constants,
// casts and declared types. The fused com.microsoft ops have float32
// kernels too, and float32 is what finite differences need.
func toFloat32(t *testing.T, m *graph.Model) {
	t.Helper()
	conv := func(tp *onnxpb.TensorProto) {
		if tp == nil || graph.TypeOf(tp) != dtype.Float16 {
			return
		}
		v, err := m.Float32s(tp)
		if err != nil {
			t.Fatal(err)
		}
		tp.DataType = int32(dtype.Float32)
		if err := graph.SetFloat32s(tp, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, init := range m.Graph().Initializer {
		conv(init)
	}
	for _, n := range m.Graph().Node {
		for _, a := range n.Attribute {
			conv(a.T)
			if n.OpType == "Cast" && a.Name == "to" && a.I == int64(dtype.Float16) {
				a.I = int64(dtype.Float32)
			}
		}
	}
	g := m.Graph()
	for _, vs := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, v := range vs {
			if tt := v.GetType().GetTensorType(); tt != nil && dtype.Type(tt.ElemType) == dtype.Float16 {
				tt.ElemType = int32(dtype.Float32)
			}
		}
	}
	m.Reindex()
}

// TestTinyLlamaGenAI: the onnxruntime-genai export, with
// SimplifiedLayerNormalization, SkipSimplifiedLayerNormalization,
// RotaryEmbedding and MultiHeadAttention with past keys and values,
// converted to float32. Its attention mask subgraph builds an [S, S] causal
// mask, so it runs a prompt without past (S > 1, P = 0) or one step with a
// past (S = 1); the step also differentiates the past keys and values, as
// prefix tuning needs.
func TestTinyLlamaGenAI(t *testing.T) {
	requireORT(t)
	for _, c := range []struct {
		name string
		s, p int64
	}{{"prompt", 3, 0}, {"step", 1, 3}} {
		t.Run(c.name, func(t *testing.T) {
			m := loadShared(t, "tiny-llama-genai-fp16/model.onnx")
			toFloat32(t, m)
			params := []string{
				"model.layers.0.attn.q_proj.MatMul.weight",
				"model.layers.1.attn.v_proj.MatMul.weight",
				"model.layers.0.post_attention_layernorm.weight",
				"model.layers.1.mlp.up_proj.MatMul.weight",
			}
			g := realGraph(t, m, params...)
			const B = 2
			var ids, mask, pos []int64
			for b := int64(0); b < B; b++ {
				for s := int64(0); s < c.s; s++ {
					ids = append(ids, 100+7*b+s)
					pos = append(pos, c.p+s)
				}
				for s := int64(0); s < c.p+c.s; s++ {
					mask = append(mask, 1)
				}
			}
			g.feeds["input_ids"] = &feed{dims: i64s(B, c.s), i: ids, elem: dtype.Int64}
			g.feeds["position_ids"] = &feed{dims: i64s(B, c.s), i: pos, elem: dtype.Int64}
			g.feeds["attention_mask"] = &feed{dims: i64s(B, c.p+c.s), i: mask, elem: dtype.Int64}
			for l := 0; l < 2; l++ {
				for _, kv := range []string{"key", "value"} {
					name := fmt.Sprintf("past_key_values.%d.%s", l, kv)
					g.feedFloats(name, i64s(B, 1, c.p, 16), nil)
					if c.p > 0 && l == 0 {
						g.params = append(g.params, name)
					}
				}
			}
			// Logits have 32000 columns: a loss on a slice of them is enough.
			y := g.node("Slice", []string{"logits", g.ints(i64s(1), 0), g.ints(i64s(1), 64), g.ints(i64s(1), 2)})
			tm := g.check(y)
			for _, n := range tm.Graph().Node {
				if n.OpType == "MultiHeadAttention" {
					t.Errorf("training graph still has MultiHeadAttention node %q", n.Name)
				}
			}
		})
	}
}

// TestTinyLlamaFloat16 builds the training graph of the model as it is,
// in float16, runs it on the CPU, and compares its gradients with those of
// the float32 conversion: float16 keeps about three digits.
func TestTinyLlamaFloat16(t *testing.T) {
	requireORT(t)
	params := []string{"model.layers.0.attn.q_proj.MatMul.weight", "model.layers.1.mlp.down_proj.MatMul.weight"}
	grads := map[dtype.Type]map[string][]float64{}
	for _, dt := range []dtype.Type{dtype.Float16, dtype.Float32} {
		m := loadShared(t, "tiny-llama-genai-fp16/model.onnx")
		if dt == dtype.Float32 {
			toFloat32(t, m)
		}
		g := &testGraph{t: t, m: m, dt: dt}
		sl := g.node("Slice", []string{"logits", g.ints(i64s(1), 0), g.ints(i64s(1), 64), g.ints(i64s(1), 2)})
		loss := g.node("ReduceSum", []string{g.node("Cast", []string{sl}, graph.AttrInt("to", int64(dtype.Float32)))}, graph.AttrInt("keepdims", 0))
		tm, err := Build(m, loss, params)
		if err != nil {
			t.Fatal(err)
		}
		must := func(x *rt.Tensor, err error) *rt.Tensor {
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
		const B, S = 1, 4
		feeds := map[string]*rt.Tensor{
			"input_ids":      must(rt.NewInt64(i64s(B, S), i64s(5, 17, 300, 9))),
			"attention_mask": must(rt.NewInt64(i64s(B, S), i64s(1, 1, 1, 1))),
			"position_ids":   must(rt.NewInt64(i64s(B, S), i64s(0, 1, 2, 3))),
		}
		for l := 0; l < 2; l++ {
			for _, kv := range []string{"key", "value"} {
				feeds[fmt.Sprintf("past_key_values.%d.%s", l, kv)] = must(rt.Zeros(dtype.Type(dt), i64s(B, 1, 0, 16)))
			}
		}
		for _, p := range params {
			init := m.Initializer(p)
			v, err := m.Float32s(init)
			if err != nil {
				t.Fatal(err)
			}
			if dt == dtype.Float16 {
				feeds[p] = must(rt.NewFloat16FromFloat32(init.Dims, v))
			} else {
				feeds[p] = must(rt.NewFloat32(init.Dims, v))
			}
		}
		res, err := g.session(tm).Run(feeds, nil)
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		grads[dt] = map[string][]float64{}
		for _, p := range params {
			grads[dt][p] = res[GradName(p)].ToFloat64()
		}
	}
	for _, p := range params {
		h, f := grads[dtype.Float16][p], grads[dtype.Float32][p]
		norm, diff := 0.0, 0.0
		for i := range f {
			if math.IsNaN(h[i]) || math.IsInf(h[i], 0) {
				t.Fatalf("%s[%d]: float16 gradient %g", p, i, h[i])
			}
			norm = math.Max(norm, math.Abs(f[i]))
			diff = math.Max(diff, math.Abs(h[i]-f[i]))
		}
		if diff > 2e-2*norm {
			t.Errorf("%s: float16 and float32 gradients differ by %g (largest element %g)", p, diff, norm)
		}
	}
}
