package train

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// QLoRA: LoRA on the int4 (MatMulNBits) layers of the model builder's
// LLaMA, trained on ONNX Runtime. The packed weights stay as they are;
// the gradient passes each int4 layer through a weight dequantized in the
// graph for that layer's backward step alone.

// qloraTargets reach every attention and MLP projection and the head.
var qloraTargets = []string{".*_proj", "lm_head"}

// TestQLoRATrains trains LoRA on every int4 layer for 30 steps: the loss
// falls and the packed weights, scales and zero points come out bit for
// bit.
func TestQLoRATrains(t *testing.T) {
	requireORT(t)
	m := int4Llama(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
	trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 2e-2, func(a *graph.Model) (Summaryish, error) {
		sites, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		for _, s := range sites {
			if s.Op != rewrite.OpMatMulNBits {
				t.Errorf("site %s is on a %s layer, not an int4 one", s.Module, s.Op)
			}
		}
		if len(sites) != 2*5+1 {
			t.Errorf("%d sites, want 11", len(sites))
		}
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	})
}

// TestQLoRAGradientsMatchFloat holds the LoRA gradients through the int4
// layers to those through their float twin: the same graph with each
// MatMulNBits a MatMul of its weight dequantized in Go (package quant,
// checked against ONNX Runtime's kernel there).
func TestQLoRAGradientsMatchFloat(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
	grads := func(float bool) (map[string][]float64, []string) {
		m := int4Llama(t)
		if float {
			dequantizeAll(t, m)
		}
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		params := sum.Trainable()
		fillAdapter(t, m, params)
		return gradientsOn(t, m, CausalLM, params, nil), params
	}
	q, params := grads(false)
	f, _ := grads(true)
	compareGradients(t, q, f, params, 1e-4)
}

// dequantizeAll turns every MatMulNBits node of m into a MatMul (plus Add
// for a bias) of the same name reading its dequantized float weight, and
// every GatherBlockQuantized node into a Gather of its dequantized table.
func dequantizeAll(t *testing.T, m *graph.Model) {
	t.Helper()
	var nodes []*onnxpb.NodeProto
	for _, n := range m.Graph().Node {
		if quant.IsGatherNode(n) {
			nodes = append(nodes, dequantizedGather(t, m, n))
			continue
		}
		if !quant.IsNode(n) {
			nodes = append(nodes, n)
			continue
		}
		w, err := quant.ReadNode(m, n)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := w.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		name := n.Input[quant.InputB] + "_dequantized"
		m.AddInitializer(graph.NewFloat32Tensor(name, w.ScaleType, []int64{int64(w.K), int64(w.N)}, vals))
		mm := &onnxpb.NodeProto{Name: n.Name, OpType: "MatMul", Input: []string{n.Input[quant.InputA], name}, Output: n.Output}
		if len(n.Input) > quant.InputBias && n.Input[quant.InputBias] != "" {
			mm.Output = []string{n.Output[0] + "_matmul"}
			nodes = append(nodes, mm, &onnxpb.NodeProto{Name: n.Name + "_bias", OpType: "Add", Input: []string{mm.Output[0], n.Input[quant.InputBias]}, Output: n.Output})
			continue
		}
		nodes = append(nodes, mm)
	}
	m.Graph().Node = nodes
	m.Reindex()
	for _, n := range m.Graph().Node {
		if quant.IsNode(n) || quant.IsGatherNode(n) {
			t.Fatalf("node %s is still %s", n.Name, n.OpType)
		}
	}
}

// dequantizedGather returns a Gather of the same name as
// GatherBlockQuantized node n of m, reading its table dequantized in Go
// ([N, K], row n the weight's column n).
func dequantizedGather(t *testing.T, m *graph.Model, n *onnxpb.NodeProto) *onnxpb.NodeProto {
	t.Helper()
	w, err := quant.ReadGatherNode(m, n)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := w.Dequantize() // [K, N]
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]float32, len(vals))
	for k := range w.K {
		for c := range w.N {
			rows[c*w.K+k] = vals[k*w.N+c]
		}
	}
	name := n.Input[quant.GatherInputData] + "_dequantized"
	m.AddInitializer(graph.NewFloat32Tensor(name, w.ScaleType, []int64{int64(w.N), int64(w.K)}, rows))
	return &onnxpb.NodeProto{Name: n.Name, OpType: "Gather", Input: []string{name, n.Input[quant.GatherInputIndices]}, Output: n.Output}
}

// TestQLoRAOnGenAIExport quantizes the real model-builder export
// ../shared/models/tiny-llama-genai-fp16 (float16) to int4, as the model
// builder ships its int4 models, and trains LoRA on every int4 layer.
func TestQLoRAOnGenAIExport(t *testing.T) {
	requireORT(t)
	m := loadSharedModel(t, "tiny-llama-genai-fp16/model.onnx").Clone()
	rep, err := quantize.Model(m, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != 2*7+1 {
		t.Fatalf("%d layers quantized, want 15", len(rep.Layers))
	}
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
	trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 2e-2, func(a *graph.Model) (Summaryish, error) {
		_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	})
}

// TestChunkedLossOnInt4Head holds the chunked causal-LM loss over an int4
// (MatMulNBits) LM head to the whole loss: the same loss (1e-6 relative)
// and LoRA gradients (1e-5 of the largest), symmetric and with zero
// points, on chunks that divide the sequence and on chunks that do not
// (one past its end); and no node of the chunked training graph outside
// the loss reads the head's packed weight (neither the [batch, seq,
// vocab] product nor the head's own backward step is left), nor does any
// MatMulNBits node.
func TestChunkedLossOnInt4Head(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(".*_proj")
	lc.R, lc.Alpha = 4, 8
	for name, o := range map[string]quantize.Options{
		"symmetric":   {Bits: 4, BlockSize: 16, Symmetric: true},
		"zero points": {Bits: 4, BlockSize: 32},
	} {
		adapted := func() (*graph.Model, []string) {
			m := int4LlamaWith(t, o)
			_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
			if err != nil {
				t.Fatal(err)
			}
			fillAdapter(t, m, sum.Trainable())
			return m, sum.Trainable()
		}
		m, params := adapted()
		head := m.Producer("logits")
		if head == nil || !quant.IsNode(head) {
			t.Fatalf("the logits are not a MatMulNBits product: the test could not fail")
		}
		packed := head.Input[quant.InputB]
		if n, _ := headReaders(t, m.Clone(), params, packed); n == 0 {
			t.Fatalf("%s: the whole loss's training graph does not read %s: the check below could not fail", name, packed)
		}
		want := gradientsOn(t, m, CausalLM, params, nil)
		for _, chunks := range []int{3, 4} {
			m, _ := adapted()
			if n, nbits := headReaders(t, m.Clone(), params, packed, WithLossChunks(chunks)); n > 0 || nbits > 0 {
				t.Errorf("%s, %d chunks: %d nodes of the training graph outside the loss read %s, %d MatMulNBits nodes", name, chunks, n, packed, nbits)
			}
			got := gradientsOn(t, m, CausalLM, params, nil, WithLossChunks(chunks))
			if d := math.Abs(got["loss"][0] - want["loss"][0]); d > 1e-6*math.Abs(want["loss"][0]) {
				t.Errorf("%s, %d chunks: loss %v, want %v", name, chunks, got["loss"][0], want["loss"][0])
			}
			for _, p := range params {
				g, w := got[autodiff.GradName(p)], want[autodiff.GradName(p)]
				var d, big float64
				for i := range w {
					d, big = math.Max(d, math.Abs(g[i]-w[i])), math.Max(big, math.Abs(w[i]))
				}
				if big == 0 || d > 1e-5*big {
					t.Errorf("%s, %d chunks: gradient of %s: max |Δ| %.3g against max |g| %.3g", name, chunks, p, d, big)
				}
			}
		}
	}
}

// headReaders appends the causal-LM loss with opts to m, builds the
// gradients of params and counts the nodes of the training graph that
// read v outside the loss's scope, and the MatMulNBits nodes that read it
// anywhere (ONNX Runtime keeps a pre-packed copy of v for each).
func headReaders(t *testing.T, m *graph.Model, params []string, v string, opts ...LossOption) (outside, nbits int) {
	t.Helper()
	loss, err := CausalLMLoss(m, "logits", opts...)
	if err != nil {
		t.Fatal(err)
	}
	g, err := autodiff.Build(m, loss, params)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range g.Graph().Node {
		if slices.Contains(node.Input, v) && quant.IsNode(node) {
			nbits++
		}
	}
	return readersOutsideLoss(g, v), nbits
}

// readersOutsideLoss counts the nodes of g outside the causal-LM loss's
// scope that read v.
func readersOutsideLoss(g *graph.Model, v string) int {
	n := 0
	for _, node := range g.Graph().Node {
		if slices.Contains(node.Input, v) && !strings.HasPrefix(node.Name, "/causal_lm_loss/") {
			n++
		}
	}
	return n
}

// TestRecomputeInt4Products: with WithRecomputeInt4Products,
// WithRecomputeProducts or WithRecomputeLayers, the int4 layers' products
// are made again in the backward pass through dequantized slabs, not by
// new MatMulNBits nodes (each would hold one more pre-packed weight in
// ONNX Runtime), and the loss and LoRA gradients are those without
// recomputation (1e-5). WithRecomputeInt4Products alone leaves the float
// products kept: on a base whose up projections alone are int4, the
// float gate projections' products are still read by the backward pass,
// and the int4 up projections' are not.
func TestRecomputeInt4Products(t *testing.T) {
	requireORT(t)
	// The benchmark's model and adapter: the standard-op LLaMA in int4,
	// LoRA on q and v, so that the MLP's gate and up are bare int4
	// products (a LoRA branch's sum reads a trainable product, which is
	// never recomputed).
	lc := adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj")
	lc.R, lc.Alpha = 4, 8
	adapted := func(targets ...string) (*graph.Model, []string, int) {
		m := int4StandardLlama(t, targets...)
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		fillAdapter(t, m, sum.Trainable())
		n := 0
		for _, node := range m.Graph().Node {
			if quant.IsNode(node) {
				n++
			}
		}
		return m, sum.Trainable(), n
	}
	// build returns the training graph of m with opt, and how many of its
	// nodes are MatMulNBits nodes and recomputed products (Gemm copies).
	build := func(m *graph.Model, params []string, opt autodiff.Option) (g *graph.Model, nbits, copies int) {
		probe := m.Clone()
		loss, err := CausalLMLoss(probe, "logits")
		if err != nil {
			t.Fatal(err)
		}
		if g, err = autodiff.Build(probe, loss, params, opt); err != nil {
			t.Fatal(err)
		}
		for _, node := range g.Graph().Node {
			if quant.IsNode(node) {
				nbits++
			}
			if strings.HasPrefix(node.Name, "recompute/") && node.OpType == "Gemm" {
				copies++
			}
		}
		return g, nbits, copies
	}
	m, params, _ := adapted()
	want := gradientsOn(t, m, CausalLM, params, nil)
	for _, c := range []struct {
		name string
		opt  autodiff.Option
	}{
		{"int4 products", autodiff.WithRecomputeInt4Products(true)},
		{"products", autodiff.WithRecomputeProducts(true)},
		{"layers", autodiff.WithRecomputeLayers(true)},
	} {
		m, params, nbits := adapted()
		_, after, copies := build(m, params, c.opt)
		if after > nbits {
			t.Errorf("%s: %d MatMulNBits nodes in the training graph, %d in the model", c.name, after, nbits)
		}
		if copies == 0 {
			t.Errorf("%s: no int4 product is recomputed", c.name)
		}
		got := gradientsOnBuilt(t, m, CausalLM, params, nil, []autodiff.Option{c.opt})
		compareGradients(t, got, want, params, 1e-5)
	}

	// Up projections int4, gate projections float.
	m, params, nbits := adapted(".*up_proj")
	if nbits == 0 {
		t.Fatal("no up projection was quantized")
	}
	g, _, _ := build(m, params, autodiff.WithRecomputeInt4Products(true))
	forward := map[string]bool{}
	for _, node := range m.Graph().Node {
		forward[node.Name] = true
	}
	var gates, ups int
	for _, node := range m.Graph().Node {
		if len(node.Output) == 0 {
			continue
		}
		reads := 0
		for _, b := range g.Graph().Node {
			if !forward[b.Name] && slices.Contains(b.Input, node.Output[0]) {
				reads++
			}
		}
		switch {
		case strings.Contains(node.Name, "gate_proj") && node.OpType == "MatMul":
			gates++
			if reads == 0 {
				t.Errorf("int4 products: the float gate projection %s is recomputed (no backward node reads %s)", node.Name, node.Output[0])
			}
		case strings.Contains(node.Name, "up_proj") && quant.IsNode(node):
			ups++
			if reads > 0 {
				t.Errorf("int4 products: %d backward nodes read the int4 up projection's %s", reads, node.Output[0])
			}
		}
	}
	if gates == 0 || ups == 0 {
		t.Fatalf("found %d float gate and %d int4 up projections: the test shows nothing", gates, ups)
	}
}

// TestTrainerRecomputesInt4Products: by default (ProductsAuto) the
// trainer's gradient graph makes an int4 base's frozen products again in
// the backward pass, on the standard-op LLaMA and on the model builder's
// (packed QKV), and ProductsKept keeps them; the training graph of a
// float base is the same with ProductsAuto as with ProductsKept.
func TestTrainerRecomputesInt4Products(t *testing.T) {
	requireORT(t)
	recomputed := func(m *graph.Model, p Products) (int, string) {
		lc := adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj", ".*qkv_proj")
		lc.R = 4
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(3))
		if err != nil {
			t.Fatal(err)
		}
		opts := testOptions()
		opts.Steps, opts.RecomputeProducts = 1, p
		tr, _ := trainSteps(t, m, sum.Trainable(), patternData(8, 8, 32, 1), opts)
		g, err := tr.gradientGraph()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, node := range g.Graph().Node {
			if strings.HasPrefix(node.Name, "recompute/") && node.OpType == "Gemm" {
				n++
			}
		}
		b, err := g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return n, string(b)
	}
	standard := func() *graph.Model { return int4StandardLlama(t) }
	for name, base := range map[string]func() *graph.Model{"standard ops": standard, "model builder": func() *graph.Model { return int4Llama(t) }} {
		if n, _ := recomputed(base(), ProductsAuto); n == 0 {
			t.Errorf("%s: by default no int4 product is recomputed", name)
		}
		if n, _ := recomputed(base(), ProductsKept); n != 0 {
			t.Errorf("%s: ProductsKept recomputes %d int4 products", name, n)
		}
	}
	float := func() *graph.Model {
		m, err := models.Llama(models.LlamaTiny())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	_, auto := recomputed(float(), ProductsAuto)
	_, kept := recomputed(float(), ProductsKept)
	if auto != kept {
		t.Error("float base: the training graph with ProductsAuto is not the one with ProductsKept")
	}
}

// int4StandardLlama is the standard-op tiny LLaMA (no KV cache) with its
// linear layers that match targets (all when none) quantized to int4 in
// blocks of 16, with zero points.
func int4StandardLlama(t *testing.T, targets ...string) *graph.Model {
	t.Helper()
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Model(m, quantize.Options{Bits: 4, BlockSize: 16, Targets: targets}); err != nil {
		t.Fatal(err)
	}
	return m
}
