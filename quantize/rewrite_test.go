package quantize_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

func llamaTiny(t *testing.T) *graph.Model {
	t.Helper()
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestModelNames checks the model builder's names and that each float
// MatMul became one MatMulNBits node in its place.
func TestModelNames(t *testing.T) {
	for _, sym := range []bool{false, true} {
		m := llamaTiny(t)
		before := len(m.Graph().Node)
		old := m.NodeByName("/model/layers.0/self_attn/q_proj/MatMul")
		in, out := old.Input[0], old.Output[0]
		rep, err := quantize.Model(m, quantize.Options{Symmetric: sym})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Layers) != 15 || rep.Linears != 15 {
			t.Fatalf("symmetric=%v: quantized %d of %d layers, want 15 of 15", sym, len(rep.Layers), rep.Linears)
		}
		if got := len(m.Graph().Node); got != before {
			t.Errorf("symmetric=%v: %d nodes after, want the %d before", sym, got, before)
		}
		l := rep.Layers[0]
		want := quantize.Layer{
			Module: "model.layers.0.self_attn.q_proj", Node: "/model/layers.0/self_attn/q_proj/MatMul", Op: "MatMul",
			NewNode: "/model/layers.0/self_attn/q_proj/MatMul_Q4", Weight: "model.layers.0.self_attn.q_proj.weight",
			Tensors: quant.TensorNames{B: "model.layers.0.self_attn.q_proj.weight_Q4", Scales: "model.layers.0.self_attn.q_proj.weight_scales"},
			K:       16, N: 16,
		}
		if !sym {
			want.Tensors.ZeroPoints = "model.layers.0.self_attn.q_proj.weight_zero_points"
		}
		l.MaxAbsError, l.RelError, l.OutputRelError = 0, 0, 0
		if l != want {
			t.Errorf("symmetric=%v: first layer %+v, want %+v", sym, l, want)
		}
		node := m.NodeByName(want.NewNode)
		if node == nil || !quant.IsNode(node) || node.Input[0] != in || node.Output[0] != out {
			t.Fatalf("symmetric=%v: no MatMulNBits node %q from %q to %q", sym, want.NewNode, in, out)
		}
		if m.Initializer(want.Weight) != nil {
			t.Errorf("symmetric=%v: the float weight %q is still there", sym, want.Weight)
		}
		if got := m.Opset(quant.Domain); got != 1 {
			t.Errorf("symmetric=%v: com.microsoft opset %d, want 1", sym, got)
		}
		for _, n := range m.Graph().Node {
			if n.OpType == "MatMul" && m.Initializer(n.Input[1]) != nil {
				t.Errorf("symmetric=%v: MatMul %q still has a float weight", sym, n.Name)
			}
		}
		var packed, float int64
		for _, l := range rep.Layers {
			kb := int64((l.K + 31) / 32)
			packed += int64(l.N) * kb * (16 + 4) // 32 codes of 4 bits and a float32 scale per block
			if !sym {
				packed += int64(l.N) * ((kb + 1) / 2)
			}
			float += int64(4 * l.K * l.N)
		}
		if rep.PackedBytes != packed || rep.FloatBytes != float {
			t.Errorf("symmetric=%v: %d packed bytes for %d float bytes, want %d for %d", sym, rep.PackedBytes, rep.FloatBytes, packed, float)
		}
	}
}

func TestModelTargets(t *testing.T) {
	m := llamaTiny(t)
	rep, err := quantize.Model(m, quantize.Options{Targets: []string{".*q_proj", "lm_head"}, AccuracyLevel: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range rep.Layers {
		got = append(got, l.Module)
	}
	want := []string{"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "lm_head"}
	if !slices.Equal(got, want) || rep.Linears != 3 {
		t.Errorf("quantized %q of %d, want %q of 3", got, rep.Linears, want)
	}
	if n := m.NodeByName("/model/layers.0/self_attn/k_proj/MatMul"); n == nil || n.OpType != "MatMul" {
		t.Errorf("k_proj was not left as a MatMul")
	}
	if n := m.NodeByName("/lm_head/MatMul_Q4"); n == nil || quant.AccuracyLevelOf(n) != 4 {
		t.Errorf("lm_head's MatMulNBits has no accuracy_level 4")
	}
}

// tinyGraph builds Y = x·W through the given nodes, for rewrite cases.
func tinyGraph(t *testing.T, build func(m *graph.Model)) *graph.Model {
	t.Helper()
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, Graph: &onnxpb.GraphProto{Name: "g"}}, "")
	m.SetOpset("", 17)
	build(m)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

func weight(name string, dt dtype.Type, dims ...int64) *onnxpb.TensorProto {
	v := make([]float32, graph.NumElements(dims))
	for i := range v {
		v[i] = float32(i%13-6) / 10
	}
	return graph.NewFloat32Tensor(name, dt, dims, v)
}

// TestModelGraphs checks Gemm's forms, skips, shared weights and a tied
// embedding on small graphs.
func TestModelGraphs(t *testing.T) {
	for _, test := range []struct {
		reason  string
		build   func(m *graph.Model)
		layers  int
		skipped []string // reasons, in order
		shared  int
		kept    []string // initializers that must stay
		gone    []string // initializers and nodes that must go
	}{
		{"gemm transB with bias, alpha and beta", func(m *graph.Model) {
			m.AddInput(graph.TensorInfo("x", dtype.Float32, []int64{3, 32}))
			m.AddInitializer(weight("fc.weight", dtype.Float32, 8, 32))
			m.AddInitializer(weight("fc.bias", dtype.Float32, 8))
			m.NewNode("Gemm", "/fc/Gemm", []string{"x", "fc.weight", "fc.bias"}, []string{"y"},
				graph.AttrInt("transB", 1), graph.AttrFloat("alpha", 0.5), graph.AttrFloat("beta", 2))
			m.AddOutput(graph.TensorInfo("y", dtype.Float32, []int64{3, 8}))
		}, 1, nil, 0, []string{"fc.bias_beta"}, []string{"fc.weight", "fc.bias"}},
		{"gemm skips", func(m *graph.Model) {
			m.AddInput(graph.TensorInfo("x", dtype.Float32, []int64{32, 3}))
			m.AddInput(graph.TensorInfo("x2", dtype.Float32, []int64{3, 32}))
			m.AddInput(graph.TensorInfo("c", dtype.Float32, []int64{8}))
			m.AddInitializer(weight("a.weight", dtype.Float32, 32, 8))
			m.AddInitializer(weight("b.weight", dtype.Float32, 32, 8))
			m.AddInitializer(weight("b.bias", dtype.Float32, 1, 8))
			m.AddInitializer(weight("c.weight", dtype.Float32, 32, 8))
			m.NewNode("Gemm", "/a/Gemm", []string{"x", "a.weight"}, []string{"ya"}, graph.AttrInt("transA", 1))
			m.NewNode("Gemm", "/b/Gemm", []string{"x2", "b.weight", "b.bias"}, []string{"yb"})
			m.NewNode("Gemm", "/c/Gemm", []string{"x2", "c.weight", "c"}, []string{"yc"})
			for _, y := range []string{"ya", "yb", "yc"} {
				m.AddOutput(graph.TensorInfo(y, dtype.Float32, []int64{3, 8}))
			}
		}, 0, []string{"a Gemm with transA=1", `Gemm's C "b.bias" has shape [1 8], not [8]`, `Gemm's C "c" is not an initializer`}, 0, []string{"a.weight", "b.weight", "c.weight"}, nil},
		{"cast and transpose chain", func(m *graph.Model) {
			m.AddInput(graph.TensorInfo("x", dtype.Float32, []int64{3, 32}))
			m.AddInitializer(weight("w.weight", dtype.Float16, 8, 32))
			m.NewNode("Cast", "/w/Cast", []string{"w.weight"}, []string{"w32"}, graph.AttrInt("to", int64(dtype.Float32)))
			m.NewNode("Transpose", "/w/Transpose", []string{"w32"}, []string{"wt"}, graph.AttrInts("perm", 1, 0))
			m.NewNode("MatMul", "/w/MatMul", []string{"x", "wt"}, []string{"y"})
			m.AddOutput(graph.TensorInfo("y", dtype.Float32, []int64{3, 8}))
		}, 1, nil, 0, []string{"w.weight_Q4"}, []string{"w.weight", "/w/Cast", "/w/Transpose"}},
		{"tied embedding", func(m *graph.Model) {
			m.AddInput(graph.TensorInfo("ids", dtype.Int64, []int64{3}))
			m.AddInitializer(weight("embed.weight", dtype.Float32, 40, 16))
			m.NewNode("Gather", "/embed/Gather", []string{"embed.weight", "ids"}, []string{"h"})
			m.NewNode("Transpose", "/lm_head/Transpose", []string{"embed.weight"}, []string{"wt"}, graph.AttrInts("perm", 1, 0))
			m.NewNode("MatMul", "/lm_head/MatMul", []string{"h", "wt"}, []string{"logits"})
			m.NewNode("MatMul", "/lm_head2/MatMul", []string{"h", "wt"}, []string{"logits2"})
			m.AddOutput(graph.TensorInfo("logits", dtype.Float32, []int64{3, 40}))
			m.AddOutput(graph.TensorInfo("logits2", dtype.Float32, []int64{3, 40}))
		}, 2, nil, 1, []string{"embed.weight"}, []string{"/lm_head/Transpose"}},
		{"float64 and float16", func(m *graph.Model) {
			m.AddInput(graph.TensorInfo("x", dtype.Float64, []int64{3, 32}))
			m.AddInput(graph.TensorInfo("h", dtype.Float16, []int64{3, 32}))
			m.AddInitializer(weight("d.weight", dtype.Float64, 32, 8))
			m.AddInitializer(weight("h.weight", dtype.Float16, 32, 8))
			m.NewNode("MatMul", "/d/MatMul", []string{"x", "d.weight"}, []string{"yd"})
			m.NewNode("MatMul", "/h/MatMul", []string{"h", "h.weight"}, []string{"yh"})
			m.AddOutput(graph.TensorInfo("yd", dtype.Float64, []int64{3, 8}))
			m.AddOutput(graph.TensorInfo("yh", dtype.Float16, []int64{3, 8}))
		}, 1, []string{"it computes in float64, and ONNX Runtime's CPU MatMulNBits takes float32 or float16"}, 0, []string{"d.weight", "h.weight_Q4"}, []string{"h.weight"}},
	} {
		float := tinyGraph(t, test.build)
		m := float.Clone()
		rep, err := quantize.Model(m, quantize.Options{BlockSize: 16})
		if test.layers == 0 {
			if err == nil || !strings.Contains(err.Error(), "none of the") {
				t.Errorf("%s: got %v, want the error that no layer can be quantized", test.reason, err)
			}
			for _, why := range test.skipped {
				if err == nil || !strings.Contains(err.Error(), why) {
					t.Errorf("%s: error %v does not say %q", test.reason, err, why)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", test.reason, err)
			continue
		}
		if len(rep.Layers) != test.layers {
			t.Errorf("%s: quantized %d layers, want %d", test.reason, len(rep.Layers), test.layers)
		}
		var whys []string
		for _, s := range rep.Skipped {
			whys = append(whys, s.Reason)
		}
		if !slices.Equal(whys, test.skipped) {
			t.Errorf("%s: skipped %q, want %q", test.reason, whys, test.skipped)
		}
		shared := 0
		for _, l := range rep.Layers {
			if l.Shared {
				shared++
			}
		}
		if shared != test.shared {
			t.Errorf("%s: %d layers share packed weights, want %d", test.reason, shared, test.shared)
		}
		for _, name := range test.kept {
			if m.Initializer(name) == nil {
				t.Errorf("%s: initializer %q is gone", test.reason, name)
			}
		}
		for _, name := range test.gone {
			if m.Initializer(name) != nil || m.NodeByName(name) != nil {
				t.Errorf("%s: %q is still there", test.reason, name)
			}
		}
		// The quantized graph computes what the float one does, up to the
		// rounding of its weights: a wrong alpha, beta or transposition
		// would be off by far more.
		if e := outputsDiffer(t, float, m); e > 0.15 {
			t.Errorf("%s: outputs differ from the float graph's by %.3g relative, want ≤ 0.15 (4-bit rounding moves them by about 0.06)", test.reason, e)
		}
	}
}

// outputsDiffer runs a and b on the same random inputs in ONNX Runtime
// and returns the largest ‖a − b‖/‖a‖ over their outputs.
func outputsDiffer(t *testing.T, a, b *graph.Model) float64 {
	t.Helper()
	requireORT(t)
	feeds := map[string]*rt.Tensor{}
	for i, v := range a.Graph().Input {
		et, dims, _ := graph.ValueShape(v)
		x := normals(int(graph.NumElements(dims)), uint64(i))
		var tn *rt.Tensor
		var err error
		switch et {
		case dtype.Int64:
			ids := make([]int64, len(x))
			for j := range ids {
				ids[j] = int64(j * 7 % 11)
			}
			tn, err = rt.NewInt64(dims, ids)
		case dtype.Float16:
			tn, err = rt.NewFloat16FromFloat32(dims, x)
		case dtype.Float64:
			f := make([]float64, len(x))
			for j := range f {
				f[j] = float64(x[j])
			}
			tn, err = rt.NewFloat64(dims, f)
		default:
			tn, err = rt.NewFloat32(dims, x)
		}
		if err != nil {
			t.Fatal(err)
		}
		feeds[v.Name] = tn
	}
	run := func(m *graph.Model) map[string][]float64 {
		buf, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s, err := rt.NewSessionFromBytes(buf, rt.WithIntraOpThreads(1))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res, err := s.Run(feeds, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]float64{}
		for k, v := range res {
			out[k] = v.ToFloat64()
		}
		return out
	}
	ya, yb := run(a), run(b)
	var worst float64
	for name, want := range ya {
		got := make([]float32, len(yb[name]))
		for i, v := range yb[name] {
			got[i] = float32(v)
		}
		worst = max(worst, relFrobenius(got, want))
	}
	return worst
}

// normals returns n standard normal values, deterministic in seed.
func normals(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 3))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func TestModelErrors(t *testing.T) {
	adapted := llamaTiny(t)
	if _, _, err := rewrite.InjectLoRA(adapted, adapter.LoRAConfig{R: 2, Alpha: 2, TargetModules: []string{".*q_proj"}}); err != nil {
		t.Fatal(err)
	}
	prefixed := llamaTiny(t)
	if _, _, err := rewrite.InjectPrefix(prefixed, adapter.PrefixConfig{NumPrefixTokens: 2}); err != nil {
		t.Fatal(err)
	}
	noLinear := tinyGraph(t, func(m *graph.Model) {
		m.AddInput(graph.TensorInfo("x", dtype.Float32, []int64{3}))
		m.NewNode("Relu", "/r", []string{"x"}, []string{"y"})
		m.AddOutput(graph.TensorInfo("y", dtype.Float32, []int64{3}))
	})
	for _, test := range []struct {
		reason string
		m      *graph.Model
		o      quantize.Options
		want   string
	}{
		{"3 bits", llamaTiny(t), quantize.Options{Bits: 3}, "3 bits: MatMulNBits takes 2, 4 or 8"},
		{"block size 24", llamaTiny(t), quantize.Options{BlockSize: 24}, "block size 24"},
		{"block size 8", llamaTiny(t), quantize.Options{BlockSize: 8}, "block size 8"},
		{"accuracy level", llamaTiny(t), quantize.Options{AccuracyLevel: 7}, "accuracy level 7"},
		{"no match", llamaTiny(t), quantize.Options{Targets: []string{"q_proj"}}, `targets ["q_proj"] matched no linear layer; the model's modules are: model.layers.0.self_attn.q_proj`},
		{"bad regex", llamaTiny(t), quantize.Options{Targets: []string{"(("}}, `target "(("`},
		{"no linear layer", noLinear, quantize.Options{}, "model has no linear layer to quantize"},
		{"only nested layers", ifLinear(t), quantize.Options{}, `2 sit inside If/Loop/Scan subgraphs (MatMul "/select/a/MatMul" in then_branch of "/select/If", …)`},
		{"LoRA", adapted, quantize.Options{}, "carries LoRA branches"},
		{"prefix", prefixed, quantize.Options{}, "carries a prefix"},
	} {
		_, err := quantize.Model(test.m, test.o)
		if err == nil || !strings.HasPrefix(err.Error(), "quantize: ") || !strings.Contains(err.Error(), test.want) {
			t.Errorf("%s: got %v, want an error containing %q", test.reason, err, test.want)
		}
	}
}

// ifLinear is the model whose linear layers sit inside the branches of an If.
func ifLinear(t *testing.T) *graph.Model {
	t.Helper()
	m, err := models.IfLinear(false, 1)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
