package train

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// lossAndGrads builds LlamaTiny with LoRA on q and v (random B, so that A
// has a gradient too), appends the causal-LM loss with opts and returns
// the loss and the adapter gradients of one batch, computed by ONNX
// Runtime, and the training graph. With trainHead the LM head's weight
// trains too.
func lossAndGrads(t *testing.T, ids, labels []int64, batch, seq int, trainHead bool, opts ...LossOption) (float32, map[string][]float32, *graph.Model) {
	return lossAndGradsBuilt(t, ids, labels, batch, seq, trainHead, nil, opts...)
}

// lossAndGradsBuilt is lossAndGrads with autodiff options.
func lossAndGradsBuilt(t *testing.T, ids, labels []int64, batch, seq int, trainHead bool, build []autodiff.Option, opts ...LossOption) (float32, map[string][]float32, *graph.Model) {
	t.Helper()
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	lc := adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj")
	lc.R, lc.Alpha = 4, 8
	_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	r := NewRNG(5)
	for _, name := range sum.LoRA {
		if strings.Contains(name, "lora_B") {
			init := m.Initializer(name)
			if err := graph.SetFloat32s(init, randomFloats(r, int(graph.NumElements(init.Dims)), 0.1, false)); err != nil {
				t.Fatal(err)
			}
		}
	}
	loss, err := CausalLMLoss(m, "logits", opts...)
	if err != nil {
		t.Fatal(err)
	}
	params := sum.LoRA
	if trainHead {
		params = append(params, "lm_head.weight")
	}
	g, err := autodiff.Build(m, loss, params, build...)
	if err != nil {
		t.Fatal(err)
	}
	shape := []int64{int64(batch), int64(seq)}
	ones, pos := make([]int64, batch*seq), make([]int64, batch*seq)
	for i := range ones {
		ones[i], pos[i] = 1, int64(i%seq)
	}
	in := map[string]*rt.Tensor{
		"input_ids":      mustTensor(t)(rt.NewInt64(shape, ids)),
		"attention_mask": mustTensor(t)(rt.NewInt64(shape, ones)),
		"position_ids":   mustTensor(t)(rt.NewInt64(shape, pos)),
		LabelsInput:      mustTensor(t)(rt.NewInt64(shape, labels)),
	}
	var outs []string
	for _, name := range params {
		v, err := m.Float32s(m.Initializer(name))
		if err != nil {
			t.Fatal(err)
		}
		in[name] = mustTensor(t)(rt.NewFloat32(m.Initializer(name).Dims, v))
		outs = append(outs, autodiff.GradName(name))
	}
	res := runModel(t, g, in, append([]string{loss}, outs...)...)
	grads := map[string][]float32{}
	for i, name := range params {
		grads[name] = res[outs[i]].Float32()
	}
	return res[loss].Float32()[0], grads, g
}

// The chunked loss gives the whole loss's value and LoRA gradients, to
// float tolerance, on a sequence that the chunks do not divide (and with
// more chunks than positions, so that some chunks are empty), with
// ignored labels; and its training graph has no [batch, seq, vocab]
// value.
func TestChunkedCausalLMLoss(t *testing.T) {
	requireORT(t)
	const batch, seq, vocab = 2, 7, 32
	r := NewRNG(9)
	ids, labels := make([]int64, batch*seq), make([]int64, batch*seq)
	for i := range ids {
		ids[i] = int64(r.Intn(vocab))
		labels[i] = ids[i]
	}
	labels[3], labels[seq+5] = IgnoreIndex, IgnoreIndex
	wantLoss, wantGrads, whole := lossAndGrads(t, ids, labels, batch, seq, false)
	if n := vocabWide(whole); n == 0 {
		t.Fatalf("the whole loss's graph does not multiply by the whole LM head: the check below could not fail")
	}
	for _, chunks := range []int{3, 10} {
		loss, grads, g := lossAndGrads(t, ids, labels, batch, seq, false, WithLossChunks(chunks))
		if d := math.Abs(float64(loss - wantLoss)); d > 1e-6*math.Abs(float64(wantLoss)) {
			t.Errorf("%d chunks: loss %v, want %v", chunks, loss, wantLoss)
		}
		for name, want := range wantGrads {
			if maxD, maxW := maxAbsDiff(grads[name], want); maxW == 0 || maxD > 1e-5*maxW {
				t.Errorf("%d chunks: gradient of %s: max |Δ| %.3g against max |g| %.3g", chunks, name, maxD, maxW)
			}
		}
		if n := vocabWide(g); n > 0 {
			t.Errorf("%d chunks: %d nodes of the training graph multiply by the whole LM head", chunks, n)
		}
	}
	// Where the head trains, its gradient flows through the chunks.
	_, wantGrads, _ = lossAndGrads(t, ids, labels, batch, seq, true)
	_, grads, _ := lossAndGrads(t, ids, labels, batch, seq, true, WithLossChunks(3))
	for name, want := range wantGrads {
		if d, w := maxAbsDiff(grads[name], want); w == 0 || d > 1e-5*w {
			t.Errorf("trained head: gradient of %s: max |Δ| %.3g against max |g| %.3g", name, d, w)
		}
	}
}

// maxAbsDiff returns max|got − want| and max|want|; d is +Inf where the
// lengths differ or a value is NaN.
func maxAbsDiff(got, want []float32) (d, w float64) {
	if len(got) != len(want) {
		return math.Inf(1), 1
	}
	for i := range want {
		w = math.Max(w, math.Abs(float64(want[i])))
		e := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(e) {
			e = math.Inf(1)
		}
		d = math.Max(d, e)
	}
	return d, w
}

// TestMaxAbsDiffSeesNaN: a NaN, on either side or both, is no match.
func TestMaxAbsDiffSeesNaN(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range [][2][]float32{{{1, nan}, {1, 2}}, {{1, 2}, {1, nan}}, {{nan}, {nan}}} {
		if d, _ := maxAbsDiff(c[0], c[1]); !math.IsInf(d, 1) {
			t.Errorf("maxAbsDiff(%v, %v) = %v, want +Inf", c[0], c[1], d)
		}
	}
	if d, w := maxAbsDiff([]float32{1, 2}, []float32{1, 2.5}); d != 0.5 || w != 2.5 {
		t.Errorf("maxAbsDiff = %v, %v, want 0.5, 2.5", d, w)
	}
}

// vocabWide counts the nodes of g that multiply by the whole LM head
// (outside the chunked loss's scope): the product that makes the [batch,
// seq, vocab] logits, and its gradient.
func vocabWide(g *graph.Model) int {
	n := 0
	for _, node := range g.Graph().Node {
		for _, in := range node.Input {
			if in == "lm_head.weight" && !strings.HasPrefix(node.Name, "/causal_lm_loss/") {
				n++
			}
		}
	}
	return n
}

// Whole-layer recomputation gives the same loss and gradients, and
// recomputes more than the default (the layers' products and attention).
func TestRecomputeLayers(t *testing.T) {
	requireORT(t)
	const batch, seq, vocab = 2, 7, 32
	r := NewRNG(11)
	ids := make([]int64, batch*seq)
	for i := range ids {
		ids[i] = int64(r.Intn(vocab))
	}
	// The products with a layer's weights that are made again: the
	// default pass makes attention's q·kᵀ and softmax again, but no
	// product with a weight.
	recomputed := func(g *graph.Model) (n int) {
		for _, node := range g.Graph().Node {
			if strings.HasPrefix(node.Name, "recompute/") && node.OpType == "MatMul" && slices.ContainsFunc(node.Input, func(in string) bool { return g.Initializer(in) != nil }) {
				n++
			}
		}
		return n
	}
	wantLoss, wantGrads, plain := lossAndGrads(t, ids, ids, batch, seq, false, WithLossChunks(2))
	loss, grads, g := lossAndGradsBuilt(t, ids, ids, batch, seq, false, []autodiff.Option{autodiff.WithRecomputeLayers(true)}, WithLossChunks(2))
	if loss != wantLoss {
		t.Errorf("loss %v, want %v", loss, wantLoss)
	}
	for name, want := range wantGrads {
		if d, w := maxAbsDiff(grads[name], want); w == 0 || d > 1e-6*w {
			t.Errorf("gradient of %s: max |Δ| %.3g against max |g| %.3g", name, d, w)
		}
	}
	if a, b := recomputed(plain), recomputed(g); a != 0 || b < 4 {
		t.Errorf("recomputed products with weights: %d by default, %d with whole layers; want 0 and at least 4", a, b)
	}
}

// Each chunk's log probabilities, [rows, vocab], feed only that chunk:
// its label's log probability (one GatherElements, all that the loss
// value reads) and the softmax of its gradient (Exp). No
// SoftmaxCrossEntropyLoss node, whose summed loss ONNX Runtime computes
// after the last chunk while every chunk's log probabilities wait.
func TestChunkedLossFreesLogProbs(t *testing.T) {
	requireORT(t)
	const batch, seq, vocab = 2, 7, 32
	r := NewRNG(5)
	ids := make([]int64, batch*seq)
	for i := range ids {
		ids[i] = int64(r.Intn(vocab))
	}
	_, _, g := lossAndGrads(t, ids, ids, batch, seq, false, WithLossChunks(3))
	consumers := map[string][]string{}
	logps := 0
	for _, node := range g.Graph().Node {
		for _, in := range node.Input {
			consumers[in] = append(consumers[in], node.OpType)
		}
	}
	for _, node := range g.Graph().Node {
		if !strings.HasPrefix(node.Name, "/causal_lm_loss/") {
			continue
		}
		switch node.OpType {
		case "SoftmaxCrossEntropyLoss":
			t.Errorf("node %q: the chunked loss uses SoftmaxCrossEntropyLoss", node.Name)
		case "LogSoftmax":
			logps++
			got := slices.Sorted(slices.Values(consumers[node.Output[0]]))
			if !slices.Equal(got, []string{"Exp", "GatherElements"}) {
				t.Errorf("log probabilities %q feed %v, want one Exp and one GatherElements", node.Output[0], got)
			}
		}
	}
	if logps != 3 {
		t.Errorf("%d chunks' log probabilities, want 3", logps)
	}
}

// headLoRAModel builds LlamaTiny (float) or the int4 model-builder LLaMA
// with LoRA on every projection and on lm_head, with the adapter filled
// (so that every B, zero at init, passes a gradient on) and, for dropout
// > 0, the LoRA dropout seeded and switched on (the training-mode input's
// default true). It returns the model, the trainable tensors, and the
// head's base weight: lm_head.weight or the int4 head's packed one.
func headLoRAModel(t *testing.T, int4 bool, dropout float64, dora bool) (*graph.Model, []string, string) {
	t.Helper()
	var m *graph.Model
	if int4 {
		m = int4LlamaWith(t, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true})
	} else {
		c := models.LlamaTiny()
		c.NoCache = true
		var err error
		if m, err = models.Llama(c); err != nil {
			t.Fatal(err)
		}
	}
	head := m.Producer("logits")
	if head == nil || len(head.Input) < 2 {
		t.Fatalf("no LM head produces the logits")
	}
	base := head.Input[1]
	lc := adapter.DefaultLoRAConfig(".*_proj", "lm_head")
	lc.R, lc.Alpha, lc.Dropout, lc.UseDoRA = 4, 8, dropout, dora
	_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sum.LoRA, "lm_head.lora_B.weight") {
		t.Fatalf("no LoRA on lm_head: %v", sum.LoRA)
	}
	fillAdapter(t, m, sum.Trainable())
	if dropout > 0 {
		if _, err := SeedLoRADropout(m); err != nil {
			t.Fatal(err)
		}
		mode := m.Initializer(rewrite.TrainingModeInput)
		if mode == nil {
			t.Fatalf("no default for %s", rewrite.TrainingModeInput)
		}
		mode.RawData = []byte{1}
	}
	return m, sum.Trainable(), base
}

// With LoRA on lm_head, on a float head and on an int4 one, with dropout
// off and on (seeded, so that both losses see the same draws), the
// chunked loss gives the whole loss's value (1e-6 relative) and every
// LoRA gradient (1e-5 relative, in norm), on 6 positions in 4 chunks (the
// last past the end), with padded rows; and no node of its training
// graph makes or reads the [batch, seq, vocab] logits or their gradient,
// nor outside the loss reads the head's base weight or its lora_B, as
// the whole loss's graph does.
func TestChunkedLossLoRAHead(t *testing.T) {
	requireORT(t)
	const chunks = 4
	for _, c := range []struct {
		int4    bool
		dropout float64
	}{{false, 0}, {false, 0.2}, {true, 0.2}} {
		name := fmt.Sprintf("int4 %v, dropout %v", c.int4, c.dropout)
		m, params, base := headLoRAModel(t, c.int4, c.dropout, false)
		var runs [2]map[string][]float64
		for i, opts := range [][]LossOption{nil, {WithLossChunks(chunks)}} {
			a := m.Clone()
			loss := taskLoss(t, a, CausalLM, opts...)
			g, err := autodiff.Build(a, loss, params)
			if err != nil {
				t.Fatal(err)
			}
			reads := map[string]int{}
			for _, v := range []string{base, "lm_head.lora_B.weight"} {
				reads[v] = readersOutsideLoss(g, v)
			}
			reads["logits"] = touching(g, "logits")
			for v, n := range reads {
				if i == 0 && n == 0 {
					t.Fatalf("%s: the whole loss's training graph does not touch %s: the check below could not fail", name, v)
				}
				if i == 1 && n > 0 {
					t.Errorf("%s: %d nodes of the chunked training graph touch %s", name, n, v)
				}
			}
			runs[i] = gradientsOfGraph(t, g, a, CausalLM, loss, params)
		}
		want, got := runs[0], runs[1]
		compareLossAndGradients(t, name, got, want, params, 1e-6)
	}
}

// DoRA on lm_head, on a float head and on an int4 one, is not a head
// that the chunked loss computes in chunks (headOf): the loss falls back
// to the whole one, whose training graph reads the logits, with the same
// value and gradients as without chunks.
func TestChunkedLossDoRAHeadIsWhole(t *testing.T) {
	requireORT(t)
	for _, int4 := range []bool{false, true} {
		m, params, _ := headLoRAModel(t, int4, 0, true)
		want := gradientsOn(t, m.Clone(), CausalLM, params, nil)
		a := m.Clone()
		loss := taskLoss(t, a, CausalLM, WithLossChunks(4))
		g, err := autodiff.Build(a, loss, params)
		if err != nil {
			t.Fatal(err)
		}
		if touching(g, "logits") == 0 {
			t.Errorf("int4 %v: the chunked loss's training graph does not read the whole logits: DoRA's head was chunked", int4)
		}
		got := gradientsOfGraph(t, g, a, CausalLM, loss, params)
		compareGradients(t, got, want, params, 1e-6)
	}
}

// touching counts the nodes of g that make or read v or its gradient.
func touching(g *graph.Model, v string) int {
	n := 0
	for _, node := range g.Graph().Node {
		if slices.ContainsFunc(slices.Concat(node.Input, node.Output), func(x string) bool { return x == v || x == autodiff.GradName(v) }) {
			n++
		}
	}
	return n
}

// A trainer with LoRA on lm_head (dropout on) computes its loss in chunks
// by default, its training graph touching no [batch, seq, vocab] logits,
// and 30 steps lower the training-set loss.
func TestTrainLoRAHeadChunked(t *testing.T) {
	requireORT(t)
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	lc := adapter.DefaultLoRAConfig(".*_proj", "lm_head")
	lc.R, lc.Alpha, lc.Dropout = 4, 8, 0.1
	inject := func(a *graph.Model) (Summaryish, error) {
		_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	}
	adapted := m.Clone()
	sum, err := inject(adapted)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sum.trainable, "lm_head.lora_B.weight") {
		t.Fatalf("no LoRA on lm_head: %v", sum.trainable)
	}
	opts := DefaultOptions()
	opts.Steps, opts.BatchSize = 1, 4
	tr, err := NewTrainer(adapted, sum.trainable, fusedData(CausalLM, true), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.chunkedLoss == nil {
		t.Fatalf("the trainer computes the whole loss (LossChunks %d)", opts.LossChunks)
	}
	g, err := autodiff.Build(tr.chunkedLoss, tr.loss, tr.names)
	if err != nil {
		t.Fatal(err)
	}
	if n := touching(g, "logits"); n > 0 {
		t.Errorf("%d nodes of the trainer's training graph make or read the logits", n)
	}
	trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 2e-2, inject)
}
