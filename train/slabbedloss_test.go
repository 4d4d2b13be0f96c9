package train

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// Over an int4 head without LoRA on it, the chunked loss is the slabbed
// one: with slabs of 7 vocabulary rows (32 = 4·7 + 4), on the fixed batch
// with its padded (ignored) positions, symmetric and with zero points, it
// gives the whole loss's value and LoRA gradients (1e-5 relative); the
// head's packed weight is read by one dequantization of each slab, no
// more, all in the loss; and no value of the loss, run on ONNX Runtime,
// is [rows, vocab], as the whole loss's are.
func TestSlabbedLossOnInt4Head(t *testing.T) {
	requireORT(t)
	defer func(v int64) { headSlabElems = v }(headSlabElems)
	lc := adapter.DefaultLoRAConfig(".*_proj")
	lc.R, lc.Alpha = 4, 8
	for name, o := range map[string]quantize.Options{
		"symmetric":   {Bits: 4, BlockSize: 16, Symmetric: true},
		"zero points": {Bits: 4, BlockSize: 32},
	} {
		m := int4LlamaWith(t, o)
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		params := sum.Trainable()
		fillAdapter(t, m, params)
		head := m.Producer("logits")
		if head == nil || !quant.IsNode(head) {
			t.Fatalf("the logits are not a MatMulNBits product: the test could not fail")
		}
		l, err := quant.LayoutOf(head)
		if err != nil {
			t.Fatal(err)
		}
		const slab = 7
		headSlabElems = slab * int64(l.K)
		if l.N%slab == 0 {
			t.Fatalf("vocab %d is a multiple of the slab %d", l.N, slab)
		}
		slabs := (l.N + slab - 1) / slab
		packed := head.Input[quant.InputB]
		want := gradientsOn(t, m.Clone(), CausalLM, params, nil)
		for i, opts := range [][]LossOption{nil, {WithLossChunks(4)}} {
			a := m.Clone()
			loss := taskLoss(t, a, CausalLM, opts...)
			g, err := autodiff.Build(a, loss, params)
			if err != nil {
				t.Fatal(err)
			}
			wide := vocabWideValues(t, g, a, loss, params, int64(l.N))
			if i == 0 {
				if wide == 0 {
					t.Fatalf("%s: the whole loss has no [rows, vocab] value: the check below could not fail", name)
				}
				continue
			}
			if wide > 0 {
				t.Errorf("%s: %d values of the slabbed loss are [rows, vocab]", name, wide)
			}
			reads, inLoss := 0, 0
			for _, node := range g.Graph().Node {
				if slices.Contains(node.Input, packed) {
					reads++
					if strings.HasPrefix(node.Name, "/causal_lm_loss/") {
						inLoss++
					}
				}
			}
			if reads != slabs || inLoss != reads {
				t.Errorf("%s: %d nodes read %s (%d in the loss), want %d, all in the loss", name, reads, packed, inLoss, slabs)
			}
			got := gradientsOfGraph(t, g, a, CausalLM, loss, params)
			compareLossAndGradients(t, name, got, want, params, 1e-5)
		}
	}
}

// vocabWideValues runs training graph g of m's loss on the fixed batch,
// every float32 value that a node of the loss's scope makes fetched, and
// counts those of [rows, vocab] ([batch, seq, vocab] or flattened), rows
// the batch's positions.
func vocabWideValues(t *testing.T, g, m *graph.Model, loss string, params []string, vocab int64) int {
	t.Helper()
	probe := g.Clone()
	float := map[string]bool{}
	for _, in := range probe.Graph().Input {
		float[in.Name] = dtype.Type(in.GetType().GetTensorType().GetElemType()) == dtype.Float32
	}
	for _, init := range probe.Graph().Initializer {
		float[init.Name] = graph.TypeOf(init) == dtype.Float32
	}
	// The element type of each output, from the op: float32 for the
	// float ops, else that of the data input the op passes on.
	data := map[string]int{"Add": 0, "Sub": 0, "Mul": 0, "Div": 0, "Max": 0, "Neg": 0, "Reshape": 0, "Slice": 0, "Identity": 0,
		"Flatten": 0, "Transpose": 0, "Concat": 0, "Unsqueeze": 0, "Squeeze": 0, "ReduceSum": 0, "Where": 1, "Expand": 0}
	floatOps := []string{"Gemm", "MatMul", "MatMulNBits", "Exp", "Log", "LogSoftmax", "Softmax", "SoftmaxCrossEntropyLoss",
		"ScatterElements", "GatherElements", "ReduceMax", "DequantizeLinear", "SoftmaxCrossEntropyLossGrad"}
	var fetch []string
	for _, n := range probe.Graph().Node {
		isFloat := slices.Contains(floatOps, n.OpType)
		if i, ok := data[n.OpType]; ok && i < len(n.Input) {
			isFloat = float[n.Input[i]]
		}
		if n.OpType == "Cast" {
			isFloat = graph.IntAttr(n, "to", 0) == int64(dtype.Float32)
		}
		for _, out := range n.Output {
			float[out] = isFloat
			if isFloat && out != "" && strings.HasPrefix(n.Name, "/causal_lm_loss/") && out != loss {
				probe.AddOutput(&onnxpb.ValueInfoProto{Name: out, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
					TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dtype.Float32)}}}})
				fetch = append(fetch, out)
			}
		}
	}
	if len(fetch) == 0 {
		t.Fatalf("no float value in the loss: the check could not fail")
	}
	feeds := fixedBatch(t, probe, m, CausalLM, params)
	rows := graph.NumElements(feeds[LabelsInput].Shape())
	res := runModel(t, probe, feeds, append(fetch, loss)...)
	wide := 0
	for _, v := range fetch {
		if s := res[v].Shape(); len(s) > 0 && s[len(s)-1] == vocab && graph.NumElements(s) == rows*vocab {
			wide++
		}
	}
	return wide
}

// The slabbed loss writes its row maxima in the ReduceMax form of the
// model's opset: with axes an attribute below 18 (the fixture imports
// 17) and an input from 18 (the fixture raised to 18, where each of its
// ops means the same); at each, with slabs of 7 vocabulary rows, it gives
// the whole loss's value and LoRA gradients (1e-5 relative).
func TestSlabbedLossReduceMaxForms(t *testing.T) {
	requireORT(t)
	defer func(v int64) { headSlabElems = v }(headSlabElems)
	lc := adapter.DefaultLoRAConfig(".*_proj")
	lc.R, lc.Alpha = 4, 8
	for _, opset := range []int64{17, 18} {
		m := int4LlamaWith(t, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true})
		if m.Opset("") > opset {
			t.Fatalf("the fixture imports opset %d, above %d", m.Opset(""), opset)
		}
		m.SetOpset("", opset)
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		params := sum.Trainable()
		fillAdapter(t, m, params)
		head := m.Producer("logits")
		if head == nil || !quant.IsNode(head) {
			t.Fatalf("the logits are not a MatMulNBits product: the test could not fail")
		}
		l, err := quant.LayoutOf(head)
		if err != nil {
			t.Fatal(err)
		}
		headSlabElems = 7 * int64(l.K)
		want := gradientsOn(t, m.Clone(), CausalLM, params, nil)
		a := m.Clone()
		loss := taskLoss(t, a, CausalLM, WithLossChunks(4))
		g, err := autodiff.Build(a, loss, params)
		if err != nil {
			t.Fatal(err)
		}
		maxima, attr := 0, 0
		for _, n := range g.Graph().Node {
			if n.OpType != "ReduceMax" || !strings.HasPrefix(n.Name, "/causal_lm_loss/") {
				continue
			}
			maxima++
			if slices.ContainsFunc(n.Attribute, func(a *onnxpb.AttributeProto) bool { return a.Name == "axes" }) {
				attr++
				if len(n.Input) != 1 {
					t.Errorf("opset %d: ReduceMax %s has an axes attribute and %d inputs", opset, n.Name, len(n.Input))
				}
			} else if len(n.Input) != 2 || n.Input[1] == "" {
				t.Errorf("opset %d: ReduceMax %s has neither an axes attribute nor an axes input", opset, n.Name)
			}
		}
		wantAttr := maxima
		if opset >= 18 {
			wantAttr = 0
		}
		if slabs := (l.N + 6) / 7; maxima != slabs || attr != wantAttr {
			t.Errorf("opset %d: %d ReduceMax nodes in the loss, %d with an axes attribute; want %d, %d", opset, maxima, attr, slabs, wantAttr)
		}
		got := gradientsOfGraph(t, g, a, CausalLM, loss, params)
		compareLossAndGradients(t, fmt.Sprintf("opset %d", opset), got, want, params, 1e-5)
	}
}

// An int4 head with a bias (MatMulNBits input 5) is not the slabbed
// loss's, which has no bias: the chunked loss computes it chunk by chunk
// through the head's bias, and gives the whole loss's value and LoRA
// gradients (1e-5 relative), the whole loss's computed by ONNX Runtime's
// MatMulNBits with that bias; no value of the chunked loss is
// [rows, vocab].
func TestChunkedLossOnInt4HeadWithBias(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(".*_proj")
	lc.R, lc.Alpha = 4, 8
	m := int4LlamaWith(t, quantize.Options{Bits: 4, BlockSize: 32})
	_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	params := sum.Trainable()
	fillAdapter(t, m, params)
	head := m.Producer("logits")
	if head == nil || !quant.IsNode(head) {
		t.Fatalf("the logits are not a MatMulNBits product: the test could not fail")
	}
	l, err := quant.LayoutOf(head)
	if err != nil {
		t.Fatal(err)
	}
	if len(head.Input) > quant.InputBias && head.Input[quant.InputBias] != "" {
		t.Fatalf("the head has a bias already")
	}
	// A bias of spread ±2 moves the softmax: a loss that dropped it
	// would be far off.
	r := rand.New(rand.NewPCG(5, 1))
	bias := make([]float32, l.N)
	for i := range bias {
		bias[i] = float32(2 * r.NormFloat64())
	}
	m.AddInitializer(graph.NewFloat32Tensor("lm_head.bias", dtype.Float32, []int64{int64(l.N)}, bias))
	for len(head.Input) <= quant.InputBias {
		head.Input = append(head.Input, "")
	}
	head.Input[quant.InputBias] = "lm_head.bias"
	want := gradientsOn(t, m.Clone(), CausalLM, params, nil)
	a := m.Clone()
	loss := taskLoss(t, a, CausalLM, WithLossChunks(4))
	g, err := autodiff.Build(a, loss, params)
	if err != nil {
		t.Fatal(err)
	}
	read := 0
	for _, n := range g.Graph().Node {
		if slices.Contains(n.Input, "lm_head.bias") && strings.HasPrefix(n.Name, "/causal_lm_loss/") {
			read++
		}
	}
	if read == 0 {
		t.Errorf("no node of the loss reads the head's bias")
	}
	if wide := vocabWideValues(t, g, a, loss, params, int64(l.N)); wide > 0 {
		t.Errorf("%d values of the chunked loss are [rows, vocab]", wide)
	}
	got := gradientsOfGraph(t, g, a, CausalLM, loss, params)
	compareLossAndGradients(t, "int4 head with a bias", got, want, params, 1e-5)
}

// With LoRA on the int4 head (and on every projection), with dropout off
// and on (seeded, so that both losses see the same draws), the chunked
// loss is the slabbed one: with slabs of 7 vocabulary rows (vocab not a
// multiple), on the fixed batch with its padded (ignored) positions, its
// training graph has one row maximum a slab and reads the head's packed
// weight twice a slab (the second pass, for lora_B's gradient), all in
// the loss; it gives the whole loss's value and every LoRA gradient,
// lm_head's lora_A and lora_B among them (1e-5 relative); and no value of
// it, run on ONNX Runtime, is [rows, vocab].
func TestSlabbedLossLoRAHead(t *testing.T) {
	requireORT(t)
	defer func(v int64) { headSlabElems = v }(headSlabElems)
	for _, dropout := range []float64{0, 0.2} {
		m, params, packed := headLoRAModel(t, true, dropout, false)
		for _, p := range []string{"lm_head.lora_A.weight", "lm_head.lora_B.weight"} {
			if !slices.Contains(params, p) {
				t.Fatalf("dropout %v: %s does not train: %v", dropout, p, params)
			}
		}
		var head *onnxpb.NodeProto
		for _, n := range m.Graph().Node {
			if quant.IsNode(n) && len(n.Input) > quant.InputB && n.Input[quant.InputB] == packed {
				head = n
			}
		}
		if head == nil {
			t.Fatalf("dropout %v: no MatMulNBits node reads %s", dropout, packed)
		}
		l, err := quant.LayoutOf(head)
		if err != nil {
			t.Fatal(err)
		}
		const slab = 7
		headSlabElems = slab * int64(l.K)
		if l.N%slab == 0 {
			t.Fatalf("vocab %d is a multiple of the slab %d", l.N, slab)
		}
		slabs := (l.N + slab - 1) / slab
		want := gradientsOn(t, m.Clone(), CausalLM, params, nil)
		a := m.Clone()
		loss := taskLoss(t, a, CausalLM, WithLossChunks(4))
		g, err := autodiff.Build(a, loss, params)
		if err != nil {
			t.Fatal(err)
		}
		maxima, reads, inLoss := 0, 0, 0
		for _, n := range g.Graph().Node {
			inScope := strings.HasPrefix(n.Name, "/causal_lm_loss/")
			if n.OpType == "ReduceMax" && inScope {
				maxima++
			}
			if slices.Contains(n.Input, packed) {
				reads++
				if inScope {
					inLoss++
				}
			}
		}
		if maxima != slabs {
			t.Errorf("dropout %v: %d ReduceMax nodes in the loss, want %d: not the slabbed loss", dropout, maxima, slabs)
		}
		if reads != 2*slabs || inLoss != reads {
			t.Errorf("dropout %v: %d nodes read %s (%d in the loss), want %d, all in the loss", dropout, reads, packed, inLoss, 2*slabs)
		}
		if wide := vocabWideValues(t, g, a, loss, params, int64(l.N)); wide > 0 {
			t.Errorf("dropout %v: %d values of the slabbed loss are [rows, vocab]", dropout, wide)
		}
		got := gradientsOfGraph(t, g, a, CausalLM, loss, params)
		compareLossAndGradients(t, fmt.Sprintf("dropout %v", dropout), got, want, params, 1e-5)
	}
}
