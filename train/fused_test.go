package train

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
	"google.golang.org/protobuf/proto"
)

// The graphs that the onnxruntime-genai model builder and ONNX Runtime's
// transformer optimizer make (package models, Producer), full of
// com.microsoft fused ops, trained with LoRA and prefix tuning: the loss
// falls in 30 steps, the frozen tensors come out bit for bit, and the
// gradients through the fused graph are those through its standard-op
// twin.

// fusedFixture is one producer layout with the LoRA targets that reach
// each of its attention and MLP projections (and its head) as linear
// layers.
type fusedFixture struct {
	name    string
	build   func(unfused bool) (*graph.Model, error)
	targets []string
	task    Task
	lr      float64
	tol     float64 // relative error allowed between fused and twin gradients
	// before are the fused nodes that come before every adapted layer, so
	// that no gradient passes them and the training graph keeps them.
	before []string
}

// builderLlama is a tiny LLaMA that ONNX Runtime's GroupQueryAttention
// runs (head_dim 16), laid out by the model builder.
func builderLlama() models.LlamaConfig {
	return models.LlamaConfig{Core: models.Core{VocabSize: 32, Hidden: 64, Layers: 2, Heads: 4, Seed: 1, InitStd: 0.1}, KVHeads: 2, Intermediate: 48, MaxPositions: 64, Producer: models.ModelBuilder}
}

func fusedFixtures() []fusedFixture {
	llama := func(edit func(*models.LlamaConfig)) func(bool) (*graph.Model, error) {
		return func(unfused bool) (*graph.Model, error) {
			c := builderLlama()
			edit(&c)
			c.Builder.Unfused = unfused
			return models.Llama(c)
		}
	}
	separate := []string{".*_proj", "lm_head"}
	return []fusedFixture{
		{name: "model-builder-packed", build: llama(func(c *models.LlamaConfig) { c.Builder.PackedQKV = true }),
			targets: separate, task: CausalLM, lr: 2e-2, tol: 1e-4},
		{name: "model-builder-separate-interleaved", build: llama(func(c *models.LlamaConfig) { c.RopeInterleaved = true }),
			targets: separate, task: CausalLM, lr: 2e-2, tol: 1e-4},
		{name: "model-builder-rotary-nodes", build: llama(func(c *models.LlamaConfig) { c.Builder.RotaryNodes = true }),
			targets: separate, task: CausalLM, lr: 2e-2, tol: 1e-4},
		{name: "model-builder-packed-fp16", build: llama(func(c *models.LlamaConfig) { c.Builder.PackedQKV, c.DType = true, dtype.Float16 }),
			targets: separate, task: CausalLM, lr: 2e-2, tol: 3e-2},
		{name: "optimizer-gpt2", build: func(unfused bool) (*graph.Model, error) {
			c := models.GPT2Tiny()
			c.InitStd, c.Producer, c.Optimizer.Unfused = 0.1, models.TransformerOptimizer, unfused
			return models.GPT2(c)
		}, targets: []string{".*c_proj", ".*c_fc", "lm_head"}, task: CausalLM, lr: 2e-2, tol: 1e-4,
			before: []string{"EmbedLayerNormalization_0", "GptAttention_0"}},
		{name: "optimizer-bert", build: func(unfused bool) (*graph.Model, error) {
			c := models.BERTTiny()
			c.InitStd, c.Producer, c.Optimizer.Unfused = 0.1, models.TransformerOptimizer, unfused
			return models.BERT(c)
		}, targets: []string{".*dense", "classifier"}, task: SequenceClassification, lr: 5e-2, tol: 1e-4,
			before: []string{"EmbedLayerNormalization_0", "Attention_0"}},
	}
}

// fusedData returns 16 examples for the task: token runs of a fixed
// stride for a causal LM, or sequences labelled by their first token for
// classification. With ragged, the causal rows have 5 to 8 tokens, so
// that batches are padded on the right.
func fusedData(task Task, ragged bool) *Dataset {
	d := &Dataset{Path: "fused-fixture"}
	for i := range 16 {
		n := 8
		if ragged {
			n = 5 + i%4
		}
		var ids []int64
		for j := range n {
			ids = append(ids, int64((i*5+j*3)%31+1))
		}
		ex := Example{InputIDs: ids, Labels: ids, Line: i + 1}
		if task == SequenceClassification {
			ex.Label, ex.HasLabel = int64(i%3), true
			ids[0] = int64(1 + i%3*7)
		}
		d.Examples = append(d.Examples, ex)
	}
	return d
}

// TestFusedFixturesTrain trains LoRA on every attention and MLP
// projection and the head of each fixture for 30 steps.
func TestFusedFixturesTrain(t *testing.T) {
	requireORT(t)
	for _, f := range fusedFixtures() {
		t.Run(f.name, func(t *testing.T) {
			m, err := f.build(false)
			if err != nil {
				t.Fatal(err)
			}
			lc := adapter.DefaultLoRAConfig(f.targets...)
			lc.R, lc.Alpha = 4, 8
			trainFor30(t, m, f.task, fusedData(f.task, f.task == CausalLM), f.lr, func(a *graph.Model) (Summaryish, error) {
				_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
				return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
			})
		})
	}
}

// Summaryish is what trainFor30 needs of an injection: the trainable
// tensors and how many LoRA tensors there are.
type Summaryish struct {
	trainable []string
	lora      int
}

// trainFor30 adapts a clone of m with inject, trains it for 30 steps and
// checks that the training-set loss fell, the adapter changed and every
// other tensor came out bit for bit. It returns the trained model.
func trainFor30(t *testing.T, m *graph.Model, task Task, data *Dataset, lr float64, inject func(*graph.Model) (Summaryish, error)) *graph.Model {
	t.Helper()
	before := tensorBytes(t, m)
	adapted := m.Clone()
	sum, err := inject(adapted)
	if err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Steps, opts.BatchSize, opts.Schedule, opts.LR = 30, 4, "constant", lr
	opts.Session = []rt.Option{rt.WithIntraOpThreads(1)}
	tr, err := NewTrainer(adapted, sum.trainable, data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Task() != task {
		t.Errorf("detected task %q, want %q", tr.Task(), task)
	}
	first, err := tr.Evaluate(data)
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	last, err := tr.Evaluate(data)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d trainable tensors (%d LoRA): training-set loss %.4f -> %.4f", len(sum.trainable), sum.lora, first.Loss, last.Loss)
	if !(last.Loss < 0.8*first.Loss) {
		t.Errorf("training-set loss did not fall clearly: %v -> %v", first.Loss, last.Loss)
	}
	out, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	trained := map[string]bool{}
	for _, p := range sum.trainable {
		trained[p] = true
	}
	after, start := tensorBytes(t, out), tensorBytes(t, adapted)
	for name, b := range before {
		if !trained[name] && !bytes.Equal(after[name], b) {
			t.Errorf("frozen initializer %s changed in training", name)
		}
	}
	changed := 0
	for name := range trained {
		if !bytes.Equal(after[name], start[name]) {
			changed++
		}
	}
	if changed == 0 {
		t.Errorf("no adapter tensor changed")
	}
	return out
}

// TestFusedGradientsMatchTwin holds the LoRA gradients through each fused
// graph to those through its standard-op twin, with the same adapter
// values (B non-zero, so that every LoRA tensor gets a gradient) on a
// batch padded on the right.
func TestFusedGradientsMatchTwin(t *testing.T) {
	requireORT(t)
	for _, f := range fusedFixtures() {
		t.Run(f.name, func(t *testing.T) {
			lc := adapter.DefaultLoRAConfig(f.targets...)
			lc.R, lc.Alpha = 4, 8
			grads := func(unfused bool) (map[string][]float64, []string) {
				m, err := f.build(unfused)
				if err != nil {
					t.Fatal(err)
				}
				_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
				if err != nil {
					t.Fatal(err)
				}
				params := sum.Trainable()
				fillAdapter(t, m, params)
				return gradientsOn(t, m, f.task, params, f.before), params
			}
			fused, params := grads(false)
			twin, twinParams := grads(true)
			if !slices.Equal(params, twinParams) {
				t.Fatalf("the fused graph's LoRA tensors %v are not the twin's %v", params, twinParams)
			}
			compareGradients(t, fused, twin, params, f.tol)
		})
	}
}

// fillAdapter gives each of m's params values that depend on its name
// only, small and non-zero.
func fillAdapter(t *testing.T, m *graph.Model, params []string) {
	t.Helper()
	for _, p := range params {
		init := m.Initializer(p)
		if init == nil {
			t.Fatalf("no initializer %s", p)
		}
		n := graph.NumElements(init.Dims)
		v := make([]float64, n)
		h := uint64(14695981039346656037)
		for _, c := range []byte(p) {
			h = (h ^ uint64(c)) * 1099511628211
		}
		for i := range v {
			h ^= h << 13
			h ^= h >> 7
			h ^= h << 17
			v[i] = (float64(h%2001)/1000 - 1) * 0.2
		}
		m.RemoveInitializer(p)
		m.AddInitializer(graph.NewFloatTensor(p, graph.TypeOf(init), init.Dims, v))
	}
}

// gradientsOn appends the task's loss to m, builds the gradients of
// params and runs them on a fixed batch of 3 rows of up to 6 tokens,
// padded on the right; it returns the loss (under "loss") and each
// gradient. The training graph may keep the fused nodes before and those
// with gradient rules of their own; any other was written out in
// standard ops. opts go to CausalLMLoss.
func gradientsOn(t *testing.T, m *graph.Model, task Task, params, before []string, opts ...LossOption) map[string][]float64 {
	t.Helper()
	return gradientsOnBuilt(t, m, task, params, before, nil, opts...)
}

// gradientsOnBuilt is gradientsOn with autodiff options.
func gradientsOnBuilt(t *testing.T, m *graph.Model, task Task, params, before []string, build []autodiff.Option, opts ...LossOption) map[string][]float64 {
	t.Helper()
	loss := taskLoss(t, m, task, opts...)
	g, err := autodiff.Build(m, loss, params, build...)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range g.Graph().Node {
		if n.Domain == "com.microsoft" && !slices.Contains(before, n.Name) && n.OpType != "SkipSimplifiedLayerNormalization" &&
			n.OpType != "SkipLayerNormalization" && n.OpType != "RotaryEmbedding" && n.OpType != "FastGelu" && n.OpType != "BiasGelu" &&
			n.OpType != "MatMulNBits" {
			t.Errorf("the training graph keeps %s node %q on a gradient path", n.OpType, n.Name)
		}
	}
	return gradientsOfGraph(t, g, m, task, loss, params)
}

// gradientsOfGraph runs g, m's training graph of loss, on gradientsOn's
// fixed batch and returns the loss (under "loss") and the gradient of
// each of params.
func gradientsOfGraph(t *testing.T, g, m *graph.Model, task Task, loss string, params []string) map[string][]float64 {
	t.Helper()
	feeds := fixedBatch(t, g, m, task, params)
	outs := []string{loss}
	for _, p := range params {
		outs = append(outs, autodiff.GradName(p))
	}
	res := runModel(t, g, feeds, outs...)
	got := map[string][]float64{"loss": res[loss].ToFloat64()}
	for _, p := range params {
		got[autodiff.GradName(p)] = res[autodiff.GradName(p)].ToFloat64()
	}
	return got
}

// taskLoss appends the task's loss to m and returns its name; opts go to
// CausalLMLoss.
func taskLoss(t *testing.T, m *graph.Model, task Task, opts ...LossOption) string {
	t.Helper()
	var loss string
	var err error
	if task == SequenceClassification {
		loss, err = SequenceClassificationLoss(m, "logits")
	} else {
		loss, err = CausalLMLoss(m, "logits", opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	return loss
}

// fixedBatch returns the feeds of g's inputs for a fixed batch of 3 rows
// of up to 6 tokens, padded on the right, labels included; params are
// fed m's values of them.
func fixedBatch(t *testing.T, g, m *graph.Model, task Task, params []string) map[string]*rt.Tensor {
	t.Helper()
	const batch, seq = 3, 6
	lengths := []int{6, 4, 5}
	ids := make([]int64, batch*seq)
	mask := make([]int64, batch*seq)
	labels := make([]int64, batch*seq)
	for b := range batch {
		for s := range seq {
			i := b*seq + s
			if s < lengths[b] {
				ids[i], mask[i], labels[i] = int64((b*7+s*3)%31+1), 1, int64((b*7+s*3)%31+1)
			} else {
				labels[i] = IgnoreIndex
			}
		}
	}
	feeds := map[string]*rt.Tensor{}
	for _, in := range g.Graph().Input {
		name := in.Name
		if g.Initializer(name) != nil {
			continue // an input with a default
		}
		dt, dims, _ := graph.ValueShape(in)
		switch {
		case slices.Contains(params, name):
			init := m.Initializer(name)
			v, err := m.Float32s(init)
			if err != nil {
				t.Fatal(err)
			}
			feeds[name] = tensorOf(t, graph.TypeOf(init), init.Dims, v)
		case name == "input_ids":
			feeds[name] = mustTensor(t)(rt.NewInt64([]int64{batch, seq}, ids))
		case name == "attention_mask":
			feeds[name] = mustTensor(t)(rt.NewInt64([]int64{batch, seq}, mask))
		case name == "token_type_ids":
			feeds[name] = mustTensor(t)(rt.NewInt64([]int64{batch, seq}, make([]int64, batch*seq)))
		case name == "position_ids":
			pos := make([]int64, batch*seq)
			for i := range pos {
				pos[i] = int64(i % seq)
			}
			feeds[name] = mustTensor(t)(rt.NewInt64([]int64{batch, seq}, pos))
		case name == LabelsInput && task == SequenceClassification:
			feeds[name] = mustTensor(t)(rt.NewInt64([]int64{batch}, []int64{0, 2, 1}))
		case name == LabelsInput:
			feeds[name] = mustTensor(t)(rt.NewInt64([]int64{batch, seq}, labels))
		case strings.HasSuffix(name, DropoutUniformSuffix):
			// A seeded LoRA dropout's draws (SeedLoRADropout), [batch,
			// seq, in].
			module := strings.TrimSuffix(name, DropoutUniformSuffix)
			feeds[name] = mustTensor(t)(rt.NewFloat32([]int64{batch, seq, dims[2]}, DropoutDraws{Seed: 1}.Uniforms(module, batch, seq, 0, int(dims[2]))))
		case strings.HasPrefix(name, "past"):
			shape := make([]int64, len(dims))
			for i, d := range dims {
				switch {
				case d > 0:
					shape[i] = d
				case i == 0 || (len(dims) == 5 && i == 1):
					shape[i] = batch
				}
			}
			feeds[name] = tensorOf(t, dt, shape, nil)
		default:
			t.Fatalf("no feed for input %s", name)
		}
	}
	return feeds
}

// tensorOf returns a tensor of float type dt holding v (zeros where v is
// nil).
func tensorOf(t *testing.T, dt dtype.Type, shape []int64, v []float32) *rt.Tensor {
	t.Helper()
	if v == nil {
		v = make([]float32, graph.NumElements(shape))
	}
	if dt == dtype.Float16 {
		return mustTensor(t)(rt.NewFloat16FromFloat32(shape, v))
	}
	return mustTensor(t)(rt.NewFloat32(shape, v))
}

// compareLossAndGradients holds got's loss to want's within lossTol
// relative, tighter than compareGradients' bound on it, and got's
// gradients to want's as compareGradients does (1e-5); what names the
// case in the errors.
func compareLossAndGradients(t *testing.T, what string, got, want map[string][]float64, params []string, lossTol float64) {
	t.Helper()
	if d := math.Abs(got["loss"][0] - want["loss"][0]); d > lossTol*math.Abs(want["loss"][0]) {
		t.Errorf("%s: loss %v, want %v", what, got["loss"][0], want["loss"][0])
	}
	compareGradients(t, got, want, params, 1e-5)
}

// compareGradients fails where the loss or a gradient of a differs from
// b's beyond tol, relative to the gradient's norm.
func compareGradients(t *testing.T, a, b map[string][]float64, params []string, tol float64) {
	t.Helper()
	if d := math.Abs(a["loss"][0] - b["loss"][0]); d > tol*(1+math.Abs(b["loss"][0])) {
		t.Errorf("loss: %g, twin %g", a["loss"][0], b["loss"][0])
	}
	worst := 0.0
	for _, p := range params {
		x, y := a[autodiff.GradName(p)], b[autodiff.GradName(p)]
		var num, den float64
		for i := range y {
			num += (x[i] - y[i]) * (x[i] - y[i])
			den += y[i] * y[i]
		}
		if den == 0 {
			t.Errorf("%s: the twin's gradient is zero", p)
			continue
		}
		rel := math.Sqrt(num / den)
		worst = max(worst, rel)
		if !(rel <= tol) {
			t.Errorf("%s: gradient differs from the twin's by %.3g relative (norm %.3g)", p, rel, math.Sqrt(den))
		}
	}
	t.Logf("loss %.6f (twin %.6f); %d gradients, largest relative difference %.3g", a["loss"][0], b["loss"][0], len(params), worst)
}

// TestPrefixThroughGroupQueryAttention trains prefix tuning through the
// model builder's GroupQueryAttention, the prefix fed as the past of a
// batch of several rows (which ONNX Runtime's kernel itself refuses to
// run, so that the decomposition computes it, in training and in
// Evaluate), and holds the prefix gradients to the twin's.
func TestPrefixThroughGroupQueryAttention(t *testing.T) {
	requireORT(t)
	pc := adapter.PrefixConfig{NumPrefixTokens: 3}
	for _, f := range fusedFixtures()[:1] {
		t.Run(f.name, func(t *testing.T) {
			grads := func(unfused bool) (map[string][]float64, []string) {
				m, err := f.build(unfused)
				if err != nil {
					t.Fatal(err)
				}
				_, sum, err := rewrite.InjectPrefix(m, pc)
				if err != nil {
					t.Fatal(err)
				}
				params := sum.Trainable()
				fillAdapter(t, m, params)
				return gradientsOn(t, m, f.task, params, nil), params
			}
			fused, params := grads(false)
			twin, _ := grads(true)
			compareGradients(t, fused, twin, params, f.tol)

			m, err := f.build(false)
			if err != nil {
				t.Fatal(err)
			}
			trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 5e-2, func(a *graph.Model) (Summaryish, error) {
				_, sum, err := rewrite.InjectPrefix(a, pc)
				return Summaryish{sum.Trainable(), 0}, err
			})
		})
	}
}

// int4Llama is the model builder's LLaMA with every linear layer in int4
// (MatMulNBits), as the builder ships it: symmetric, blocks of 16.
func int4Llama(t *testing.T) *graph.Model {
	t.Helper()
	return int4LlamaWith(t, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true})
}

// int4LlamaWith is int4Llama quantized with o.
func int4LlamaWith(t *testing.T, o quantize.Options) *graph.Model {
	t.Helper()
	c := builderLlama()
	c.Builder.PackedQKV = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quantize.Model(m, o); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPrefixThroughInt4 trains prefix tuning on the int4 model-builder
// LLaMA: the gradient passes every MatMulNBits layer between the prefix
// and the loss, and the packed weights come out bit for bit.
func TestPrefixThroughInt4(t *testing.T) {
	requireORT(t)
	m := int4Llama(t)
	nbits := 0
	for _, n := range m.Graph().Node {
		if n.OpType == "MatMulNBits" {
			nbits++
		}
	}
	if nbits != 2*5+1 {
		t.Fatalf("%d MatMulNBits nodes, want 11", nbits)
	}
	trainFor30(t, m, CausalLM, fusedData(CausalLM, false), 5e-2, func(a *graph.Model) (Summaryish, error) {
		_, sum, err := rewrite.InjectPrefix(a, adapter.PrefixConfig{NumPrefixTokens: 3})
		return Summaryish{sum.Trainable(), 0}, err
	})
}

// genaiTwin builds the standard-op twin of the real model-builder export
// ../shared/models/tiny-llama-genai-fp16 (MultiHeadAttention, RotaryEmbedding
// and the fused norms): models.Llama at its sizes, in the Optimum layout,
// holding its weights.
func genaiTwin(t *testing.T, real *graph.Model) *graph.Model {
	t.Helper()
	c := models.LlamaConfig{Core: models.Core{VocabSize: 32000, Hidden: 16, Layers: 2, Heads: 1, Seed: 1}, KVHeads: 1, Intermediate: 64, DType: dtype.Float16}
	twin, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range twin.Graph().Initializer {
		from := genaiName(init.Name)
		src := real.Initializer(from)
		if src == nil {
			t.Fatalf("the real model has no weight %s for %s", from, init.Name)
		}
		b, err := real.TensorBytes(src)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(src.Dims, init.Dims) || graph.TypeOf(src) != graph.TypeOf(init) {
			t.Fatalf("%s is %s %v, %s is %s %v", from, graph.TypeOf(src), src.Dims, init.Name, graph.TypeOf(init), init.Dims)
		}
		init.RawData = bytes.Clone(b)
	}
	return twin
}

// genaiName turns an Optimum weight or LoRA tensor name of the LLaMA into
// the model builder's.
func genaiName(name string) string {
	switch {
	case name == "model.norm.weight":
		return "model.layers.2.final_norm_layernorm.weight"
	case name == "lm_head.weight":
		return "lm_head.MatMul.weight"
	case strings.HasSuffix(name, "_proj.weight"):
		return strings.Replace(strings.TrimSuffix(name, ".weight"), ".self_attn.", ".attn.", 1) + ".MatMul.weight"
	}
	return strings.Replace(name, ".self_attn.", ".attn.", 1)
}

// TestGenAIExportGradientsMatchTwin holds the LoRA gradients through the
// real model-builder export to those through a standard-op twin built
// independently (package models) from its weights, with the same adapter
// values on every projection and the head.
func TestGenAIExportGradientsMatchTwin(t *testing.T) {
	requireORT(t)
	real := loadSharedModel(t, "tiny-llama-genai-fp16/model.onnx")
	twin := genaiTwin(t, real)
	lc := adapter.DefaultLoRAConfig(".*_proj", "lm_head")
	lc.R, lc.Alpha = 4, 8
	adapted := func(m *graph.Model) (*graph.Model, []string) {
		a := m.Clone()
		_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		return a, sum.Trainable()
	}
	ra, rp := adapted(real)
	ta, tp := adapted(twin)
	fillAdapter(t, ra, rp)
	// The twin's adapter holds the real one's values, tensor by tensor.
	for _, p := range tp {
		src := ra.Initializer(genaiName(p))
		if src == nil {
			t.Fatalf("no LoRA tensor %s in the adapted export for the twin's %s", genaiName(p), p)
		}
		ta.RemoveInitializer(p)
		c := proto.Clone(src).(*onnxpb.TensorProto)
		c.Name = p
		ta.AddInitializer(c)
	}
	got := gradientsOn(t, ra, CausalLM, rp, nil)
	want := gradientsOn(t, ta, CausalLM, tp, nil)
	renamed := map[string][]float64{"loss": want["loss"]}
	for _, p := range tp {
		renamed[autodiff.GradName(genaiName(p))] = want[autodiff.GradName(p)]
	}
	compareGradients(t, got, renamed, rp, 1e-2)
}
