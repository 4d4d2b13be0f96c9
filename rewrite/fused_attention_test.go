package rewrite

import (
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// qvConfig is LoRA of rank r on the q and v parts of the packed
// projections that targets select (PaddleNLP's enable_lora_list).
func qvConfig(headDim int, targets ...string) adapter.LoRAConfig {
	c := config(4, 8, targets...)
	c.EnableLoRAList = adapter.EnableLoRAList{All: []bool{true, false, true}}
	c.HeadDim = headDim
	return c
}

// optimizerGPT2 is the transformer optimizer's GPT-2 (q, k, v in the
// packed weight of an Attention node), or its standard-op twin.
func optimizerGPT2(t *testing.T, unfused bool) *graph.Model {
	t.Helper()
	c := models.GPT2Tiny()
	c.InitStd, c.Producer, c.Optimizer.Unfused = 0.1, models.TransformerOptimizer, unfused
	m, err := models.GPT2(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// copyFactors gives the sites of dst the values of the sites of src, in
// order.
func copyFactors(t *testing.T, dst *graph.Model, dsites []Site, src *graph.Model, ssites []Site) {
	t.Helper()
	if len(dsites) != len(ssites) {
		t.Fatalf("%d sites against %d", len(dsites), len(ssites))
	}
	for i, s := range ssites {
		for _, p := range [][2]string{{s.A, dsites[i].A}, {s.B, dsites[i].B}} {
			v, err := src.Float32s(src.Initializer(p[0]))
			if err != nil {
				t.Fatal(err)
			}
			if err := graph.SetFloat32s(dst.Initializer(p[1]), v); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// columns returns columns [lo, hi) of the [rows, cols] initializer name.
func columns(t *testing.T, m *graph.Model, name string, lo, hi int) []float32 {
	t.Helper()
	init := m.Initializer(name)
	v, err := m.Float32s(init)
	if err != nil {
		t.Fatal(err)
	}
	cols := int(init.Dims[1])
	var out []float32
	for r := range int(init.Dims[0]) {
		out = append(out, v[r*cols+lo:r*cols+hi]...)
	}
	return out
}

// TestLoRAInsideAttention reaches q and v inside the packed weight of
// ONNX Runtime's Attention: the adapted model computes what its
// standard-op twin with the same LoRA on its packed MatMul computes, and
// the merge writes W + s·A·B into the packed weight, k's columns bit for
// bit as they were, keeping the base's nodes.
func TestLoRAInsideAttention(t *testing.T) {
	base := optimizerGPT2(t, false)
	ls, err := FindLinears(base)
	if err != nil {
		t.Fatal(err)
	}
	if l := ls[0]; l.Op != OpAttention || l.Module != "transformer.h.0.attn.c_attn" || !slices.Equal(l.PartWidths, []int64{16, 16, 16}) {
		t.Fatalf("first layer: %s %s %v", l.Op, l.Module, l.PartWidths)
	}
	adapted := base.Clone()
	sites, _, err := InjectLoRA(adapted, qvConfig(16, ".*c_attn"), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 2 || !slices.Equal(sites[0].Widths, []int64{16, 16, 16}) || !slices.Equal(sites[0].BShape(4), []int64{4, 32}) {
		t.Fatalf("sites: %+v", sites)
	}
	ref := runModel(t, base, 2, 5, 0)
	if d, where := maxRelDiff(t, runModel(t, adapted, 2, 5, 0), ref); d != 0 {
		t.Errorf("fresh branches change %s by %g", where, d)
	}
	randomizeB(t, adapted, sites, 4, 0.3)
	want := runModel(t, adapted, 2, 5, 0)
	if d, _ := maxRelDiff(t, want, ref); d < 1e-3 {
		t.Fatalf("the branches change the outputs by only %g", d)
	}

	// The twin computes q, k, v with a MatMul of the same weight: the same
	// adapter there (head_dim = hidden: contiguous parts) gives the same
	// outputs.
	twin := optimizerGPT2(t, true)
	tsites, _, err := InjectLoRA(twin, qvConfig(16, `transformer\.h\.\d\.attn`), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	copyFactors(t, twin, tsites, adapted, sites)
	if d, where := maxRelDiff(t, runModel(t, twin, 2, 5, 0), want); d > 1e-4 {
		t.Errorf("the adapted Attention differs from its twin by %g at %s", d, where)
	}

	ad, err := ExtractAdapter(adapted)
	if err != nil {
		t.Fatal(err)
	}
	merged := checkPackedMerge(t, base, adapted, want, 2, "transformer.h.0.attn.c_attn.weight", 16, 32)
	w := "transformer.h.0.attn.c_attn.weight"
	if slices.Equal(columns(t, merged, w, 0, 16), columns(t, base, w, 0, 16)) {
		t.Error("the merge left q's columns as they were")
	}

	applied := base.Clone()
	if _, _, err := ApplyLoRA(applied, ad); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, applied, 2, 5, 0), want); d > 1e-6 {
		t.Errorf("the applied adapter differs by %g at %s", d, where)
	}
	inputs := base.Clone()
	if _, _, err := InjectLoRA(inputs, qvConfig(16, ".*c_attn"), AsInputs()); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, inputs, 2, 5, 0), ref); d != 0 {
		t.Errorf("as-inputs branches fed nothing change %s by %g", where, d)
	}
	dropout := qvConfig(16, ".*c_attn")
	dropout.Dropout = 0.1
	if _, _, err := InjectLoRA(base.Clone(), dropout); err == nil || !strings.Contains(err.Error(), "fused Attention") {
		t.Errorf("dropout inside Attention: %v", err)
	}
	if err := Merge(adapted); err != nil { // plain LoRA on the whole packed weight merges too
		t.Fatal(err)
	}
	plain := base.Clone()
	psites, _, err := InjectLoRA(plain, config(4, 8, ".*c_attn"), WithSeed(1))
	if err != nil || psites[0].Enable != nil || !slices.Equal(psites[0].BShape(4), []int64{4, 48}) {
		t.Fatalf("plain LoRA on c_attn: %v %+v", err, psites)
	}
}

// TestLoRAInsidePackedQKV reaches q and v in the model builder's packed
// qkv_proj, whose parts (4 query heads, 2 KV heads) differ in width: the
// adapted model computes what the separate-projection layout of the same
// weights computes with LoRA on q_proj and v_proj holding the same
// factors, and the merge keeps k's columns and the base's nodes.
func TestLoRAInsidePackedQKV(t *testing.T) {
	build := func(packed bool) *graph.Model {
		c := models.LlamaConfig{VocabSize: 32, Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 48,
			MaxPositions: 64, Seed: 1, InitStd: 0.1, Producer: models.ModelBuilder}
		c.Builder.PackedQKV = packed
		m, err := models.Llama(c)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	base := build(true)
	adapted := base.Clone()
	sites, _, err := InjectLoRA(adapted, qvConfig(16, ".*qkv_proj"), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sites[0].Widths, []int64{64, 32, 32}) || !slices.Equal(sites[0].BShape(4), []int64{4, 96}) {
		t.Fatalf("site: %+v", sites[0])
	}
	randomizeB(t, adapted, sites, 5, 0.3)
	want := runModel(t, adapted, 1, 5, 0)

	sep := build(false)
	ssites, _, err := InjectLoRA(sep, config(4, 8, ".*(q|v)_proj"), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sites {
		a := columns(t, adapted, s.A, 0, 8)
		b := columns(t, adapted, s.B, 0, 96)
		split := func(v []float32, cols, lo, hi int) []float32 {
			var out []float32
			for r := 0; r < len(v)/cols; r++ {
				out = append(out, v[r*cols+lo:r*cols+hi]...)
			}
			return out
		}
		q, v := ssites[2*i], ssites[2*i+1]
		for name, vals := range map[string][]float32{
			q.A: split(a, 8, 0, 4), v.A: split(a, 8, 4, 8),
			q.B: split(b, 96, 0, 64), v.B: split(b, 96, 64, 96),
		} {
			if err := graph.SetFloat32s(sep.Initializer(name), vals); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d, where := maxRelDiff(t, runModel(t, sep, 1, 5, 0), want); d > 1e-4 {
		t.Errorf("LoRA on packed q, v differs from LoRA on q_proj, v_proj by %g at %s", d, where)
	}

	checkPackedMerge(t, base, adapted, want, 1, "model.layers.0.attn.qkv_proj.MatMul.weight", 64, 96)
}

// checkPackedMerge merges adapted and checks the result: the base's nodes
// and initializers, the adapted model's outputs (want, at batch) and the
// columns lo … hi−1 (k's) of the packed weight w as the base has them.
func checkPackedMerge(t *testing.T, base, adapted *graph.Model, want map[string]*rt.Tensor, batch int, w string, lo, hi int) *graph.Model {
	t.Helper()
	merged := adapted.Clone()
	if err := Merge(merged); err != nil {
		t.Fatal(err)
	}
	gotNodes, gotInits := names(merged)
	wantNodes, wantInits := names(base)
	if !slices.Equal(gotNodes, wantNodes) || !slices.Equal(gotInits, wantInits) {
		t.Errorf("the merged model's nodes or initializers are not the base's")
	}
	if d, where := maxRelDiff(t, runModel(t, merged, batch, 5, 0), want); d > 1e-4 {
		t.Errorf("merged differs from adapted by %g at %s", d, where)
	}
	if !slices.Equal(columns(t, merged, w, lo, hi), columns(t, base, w, lo, hi)) {
		t.Error("the merge changed k's columns")
	}
	return merged
}
