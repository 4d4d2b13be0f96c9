package rewrite

import (
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quant"
)

// int4Builder returns the model builder's LLaMA (separate q, k, v) with
// every linear layer int4, quantized here with package quant under the
// names ONNX Runtime's quantizer gives (…/MatMul_Q4, ….weight_Q4), and
// the float model it came from.
func int4Builder(t testing.TB) (q, float *graph.Model) {
	t.Helper()
	c := models.LlamaConfig{VocabSize: 32, Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 48,
		MaxPositions: 64, Seed: 1, InitStd: 0.1, Producer: models.ModelBuilder}
	float, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	q = float.Clone()
	ls, err := FindLinears(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		vals, err := q.Float32s(q.Initializer(l.Weight))
		if err != nil {
			t.Fatal(err)
		}
		w, err := quant.Quantize(vals, int(l.In), int(l.Out), quant.Options{Bits: 4, BlockSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		names := quant.BuilderNames(l.Weight, 4)
		ts, err := w.Tensors(names)
		if err != nil {
			t.Fatal(err)
		}
		n, err := w.Node(names, quant.NodeOptions{Name: quant.BuilderNodeName(l.NodeName, 4), A: l.Input, Y: l.Output})
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range ts {
			q.AddInitializer(tt)
		}
		q.RemoveInitializer(l.Weight)
		l.Node.Name, l.Node.OpType, l.Node.Domain, l.Node.Input, l.Node.Attribute = n.Name, n.OpType, n.Domain, n.Input, n.Attribute
	}
	q.SetOpset(quant.Domain, 1)
	q.Reindex()
	return q, float
}

// TestFindQuantizedLinears finds every MatMulNBits layer, with its
// features from K and N and its module from the builder's node path.
func TestFindQuantizedLinears(t *testing.T) {
	m, float := int4Builder(t)
	got, err := FindLinears(m)
	if err != nil {
		t.Fatal(err)
	}
	want, err := FindLinears(float)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(got) != 2*7+1 {
		t.Fatalf("%d int4 layers, %d float ones; want 15", len(got), len(want))
	}
	for i, l := range got {
		f := want[i]
		if l.Op != OpMatMulNBits || !l.Quantized() || l.Module != f.Module || l.NameFrom != "node" || l.In != f.In || l.Out != f.Out || l.DType != f.DType {
			t.Errorf("layer %d: %s %s from %s, %d×%d %s; want MatMulNBits %s, %d×%d %s", i, l.Op, l.Module, l.NameFrom, l.In, l.Out, l.DType, f.Module, f.In, f.Out, f.DType)
		}
		if !strings.HasSuffix(l.Weight, ".MatMul.weight_Q4") {
			t.Errorf("layer %s reads %q, not the packed weight", l.Module, l.Weight)
		}
	}
	if got[0].Module != "model.layers.0.attn.q_proj" {
		t.Errorf("first module %q, want model.layers.0.attn.q_proj", got[0].Module)
	}
	// Unnamed nodes take the module from the packed weight's name.
	for _, n := range m.Graph().Node {
		n.Name = ""
	}
	anon, err := FindLinears(m)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range anon {
		if l.Module != want[i].Module || l.NameFrom != "weight" {
			t.Errorf("unnamed layer %d: module %q from %s, want %q from the weight", i, l.Module, l.NameFrom, want[i].Module)
		}
	}
}

// TestInjectMergeQuantized puts LoRA on every int4 layer: the fresh
// branches change nothing, the packed tensors stay as they were, and with
// B set the dequantized merge computes what the adapted model does while
// the requantized merge keeps the base's nodes and reports its error.
func TestInjectMergeQuantized(t *testing.T) {
	base, _ := int4Builder(t)
	adapted := base.Clone()
	sites, sum, err := InjectLoRA(adapted, config(4, 8, ".*_proj", "lm_head"), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 15 {
		t.Fatalf("%d sites, want 15", len(sites))
	}
	// All params: K·N per packed weight, the float tensors, and LoRA.
	var all int64
	for _, ti := range adapted.Graph().Initializer {
		if graph.TypeOf(ti).IsFloat() && !strings.Contains(ti.Name, "_scales") && !strings.Contains(ti.Name, "lora_scaling") {
			all += graph.NumElements(ti.Dims)
		}
	}
	for _, s := range sites {
		all += s.In * s.Out
	}
	if sum.AllParams != all {
		t.Errorf("all params %d, want %d", sum.AllParams, all)
	}
	ref := runModel(t, base, 2, 5, 0)
	if d, where := maxRelDiff(t, runModel(t, adapted, 2, 5, 0), ref); d != 0 {
		t.Errorf("fresh branches change %s by %g", where, d)
	}
	randomizeB(t, adapted, sites, 2, 0.05)
	want := runModel(t, adapted, 2, 5, 0)
	effect, _ := maxRelDiff(t, want, ref)
	if effect < 1e-3 {
		t.Fatalf("the branches change the logits by only %g", effect)
	}
	ad, err := ExtractAdapter(adapted)
	if err != nil {
		t.Fatal(err)
	}

	float := adapted.Clone()
	if err := Merge(adapted.Clone()); err == nil || !strings.Contains(err.Error(), "MatMulNBits") {
		t.Errorf("merge into int4 without Dequantize or Requantize: %v", err)
	}
	if err := Merge(float, Dequantize()); err != nil {
		t.Fatal(err)
	}
	for _, n := range float.Graph().Node {
		if quant.IsNode(n) {
			t.Errorf("node %q is still MatMulNBits after the dequantized merge", n.Name)
		}
	}
	if n := float.NodeByName("/model/layers.0/attn/q_proj/MatMul"); n == nil || n.OpType != "MatMul" || n.Input[1] != "model.layers.0.attn.q_proj.MatMul.weight" {
		t.Errorf("merged q_proj: %v", n)
	}
	if float.Initializer("model.layers.0.attn.q_proj.MatMul.weight_Q4") != nil {
		t.Error("the packed q_proj weight is left behind")
	}
	if d, where := maxRelDiff(t, runModel(t, float, 2, 5, 0), want); d > 1e-4 {
		t.Errorf("dequantized merge differs from the adapted model by %g at %s", d, where)
	}

	for name, m := range map[string]func() (*graph.Model, []QuantizedMerge, error){
		"merge": func() (*graph.Model, []QuantizedMerge, error) {
			m := adapted.Clone()
			rep, err := MergeWith(m, Requantize())
			return m, rep, err
		},
		"merge-adapter": func() (*graph.Model, []QuantizedMerge, error) {
			m := base.Clone()
			rep, err := MergeAdapterWith(m, ad, Requantize())
			return m, rep, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			rq, rep, err := m()
			if err != nil {
				t.Fatal(err)
			}
			gotNodes, gotInits := names(rq)
			wantNodes, wantInits := names(base)
			if !slices.Equal(gotNodes, wantNodes) || !slices.Equal(gotInits, wantInits) {
				t.Errorf("requantized merge: nodes or initializers differ from the base's")
			}
			if len(rep) != 15 {
				t.Fatalf("%d layers reported, want 15", len(rep))
			}
			for _, r := range rep {
				if !r.Requantized || !(r.RelError > 0 && r.RelError < 0.2) || !(r.UpdateRelError > 0) {
					t.Errorf("%s: %+v", r.Module, r)
				}
			}
			logits := runModel(t, rq, 2, 5, 0)
			d, _ := maxRelDiff(t, logits, want)
			t.Logf("requantized merge: q_proj weight error %.3g (%.3g of the update); logits differ from the adapted model's by %.3g (the adapter changes them by %.3g)", rep[0].RelError, rep[0].UpdateRelError, d, effect)
			if d == 0 || d > 0.5 {
				t.Errorf("requantized logits differ by %g from the adapted ones", d)
			}
			// ONNX Runtime reads the requantized tensors as Go dequantizes
			// them: the same model with its int4 layers made float (a
			// dequantized merge of zero updates) computes the same logits.
			deq := rq.Clone()
			if _, _, err := InjectLoRA(deq, config(1, 1, ".*_proj", "lm_head")); err != nil {
				t.Fatal(err)
			}
			if err := Merge(deq, Dequantize()); err != nil {
				t.Fatal(err)
			}
			if d, where := maxRelDiff(t, runModel(t, deq, 2, 5, 0), logits); d > 1e-4 {
				t.Errorf("the requantized model differs from its dequantized float twin by %g at %s", d, where)
			}
		})
	}

	if _, _, err := Unmerge(float.Clone(), ad); err != nil {
		t.Errorf("unmerge of the dequantized (float) merge: %v", err)
	}
	if _, _, err := Unmerge(base.Clone(), ad); err == nil || !strings.Contains(err.Error(), "MatMulNBits") {
		t.Errorf("unmerge of an int4 model: %v", err)
	}
}

// TestQuantizedAsInputsAndApply: --as-inputs branches on int4 layers run
// the base when fed nothing, and an extracted adapter applied to the int4
// base computes what the adapted model did.
func TestQuantizedAsInputsAndApply(t *testing.T) {
	base, _ := int4Builder(t)
	adapted := base.Clone()
	sites, _, err := InjectLoRA(adapted, config(4, 8, ".*_proj"), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(t, adapted, sites, 3, 0.05)
	want := runModel(t, adapted, 1, 4, 0)
	ad, err := ExtractAdapter(adapted)
	if err != nil {
		t.Fatal(err)
	}
	applied := base.Clone()
	if _, _, err := ApplyLoRA(applied, ad); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, applied, 1, 4, 0), want); d > 1e-6 {
		t.Errorf("applied adapter differs by %g at %s", d, where)
	}
	inputs := base.Clone()
	if _, _, err := InjectLoRA(inputs, config(4, 8, ".*_proj"), AsInputs()); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, inputs, 1, 4, 0), runModel(t, base, 1, 4, 0)); d != 0 {
		t.Errorf("as-inputs branches fed nothing change %s by %g", where, d)
	}
}
