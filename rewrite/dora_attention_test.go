package rewrite

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// expectPackedDoRA computes, in float64 from the definition, the weight
// a DoRA site of a packed q, k, v layer computes with: V = W + s·U with
// U = A·B laid out by parts (part e of the enabled ones takes A's columns
// e·r … e·r+r−1 and B's columns of that part, into its own columns of
// the packed weight; the whole weight for plain LoRA), and
// W'[:, j] = m[j]·V[:, j]/‖V[:, j]‖. W, A, B and m are read from m's
// initializers; base gives W as it was before injection.
func expectPackedDoRA(t *testing.T, base, m *graph.Model, s Site) []float64 {
	t.Helper()
	w := values(t, base, s.Weight)
	a, b, mag := values(t, m, s.A), values(t, m, s.B), values(t, m, s.Magnitude)
	in, out, r := int(s.In), int(s.Out), s.R
	cols := len(b) / r
	// parts: each enabled part's first column in W and in B, and width.
	type part struct{ col, src, width int }
	parts := []part{{0, 0, out}}
	if s.Enable != nil {
		parts = nil
		col, src := 0, 0
		for g, on := range s.Enable {
			if on {
				parts = append(parts, part{col, src, int(s.Widths[g])})
				src += int(s.Widths[g])
			}
			col += int(s.Widths[g])
		}
	}
	rk := r * len(parts)
	v := slices.Clone(w)
	for i := 0; i < in; i++ {
		for e, p := range parts {
			for c := 0; c < p.width; c++ {
				sum := 0.0
				for k := 0; k < r; k++ {
					sum += a[i*rk+e*r+k] * b[k*cols+p.src+c]
				}
				v[i*out+p.col+c] += s.Scale * sum
			}
		}
	}
	for j := 0; j < out; j++ {
		n := 0.0
		for i := 0; i < in; i++ {
			n += v[i*out+j] * v[i*out+j]
		}
		for i := 0; i < in; i++ {
			v[i*out+j] *= mag[j] / math.Sqrt(n)
		}
	}
	return v
}

// withDType returns c with its branch type set to dt.
func withDType(c adapter.LoRAConfig, dt dtype.Type) adapter.LoRAConfig {
	c.DType = dt
	return c
}

// randomizeMagnitudes sets each DoRA magnitude of sites to its fresh value
// (‖W_j‖) times a factor in [0.5, 1.5).
func randomizeMagnitudes(t *testing.T, m *graph.Model, sites []Site, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	for _, s := range sites {
		init := m.Initializer(s.Magnitude)
		v, err := m.Float32s(init)
		if err != nil {
			t.Fatal(err)
		}
		for j := range v {
			v[j] *= float32(0.5 + rng.Float64())
		}
		if err := graph.SetFloat32s(init, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDoRAInsideFusedAttention checks DoRA on the packed q, k, v weight of
// the transformer optimizer's Attention node and of the model builder's
// qkv_proj MatMul (GroupQueryAttention's packed query, q, k and v of
// unequal widths), on the whole weight and with enable_lora_list on q and
// v. A fresh injection computes the base; with B and the magnitudes
// random, the adapted model computes what the base does with its packed
// weight replaced by W' of the float64 formula; Merge writes that W' in
// place, keeping the base's nodes and initializers, as MergeAdapter does;
// the adapter survives an HF PEFT directory; Unmerge restores the base
// weights and the adapted model; the summary counts one magnitude per
// output column of the packed weight, disabled parts' columns included.
func TestDoRAInsideFusedAttention(t *testing.T) {
	llama := func() *graph.Model {
		c := models.LlamaConfig{Core: models.Core{VocabSize: 32, Hidden: 64, Layers: 2, Heads: 4, Seed: 1, InitStd: 0.1}, KVHeads: 2, Intermediate: 48, MaxPositions: 64, Producer: models.ModelBuilder}
		c.Builder.PackedQKV = true
		m, err := models.Llama(c)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	gpt2 := func() *graph.Model { return optimizerGPT2(t, false) }
	for _, tc := range []struct {
		name   string
		base   func() *graph.Model
		cfg    adapter.LoRAConfig
		op     string
		widths []int64
		batch  int
		tol    float64 // of the fresh and adapted outputs, against the base's and the formula's
	}{
		{"attention", gpt2, config(4, 8, ".*c_attn"), OpAttention, nil, 2, 1e-5},
		{"attention-qv", gpt2, qvConfig(16, ".*c_attn"), OpAttention, []int64{16, 16, 16}, 2, 1e-5},
		// A float16 branch: the norm is taken in float16, the float32
		// weight is not rounded.
		{"attention-qv-fp16-branch", gpt2, withDType(qvConfig(16, ".*c_attn"), dtype.Float16), OpAttention, []int64{16, 16, 16}, 2, 1e-3},
		{"packed-qkv", llama, config(4, 8, ".*qkv_proj"), "MatMul", nil, 1, 1e-5},
		{"packed-qkv-qv", llama, qvConfig(16, ".*qkv_proj"), "MatMul", []int64{64, 32, 32}, 1, 1e-5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base()
			cfg := tc.cfg
			cfg.UseDoRA = true
			adapted := base.Clone()
			sites, sum, err := InjectLoRA(adapted, cfg, WithSeed(1))
			if err != nil {
				t.Fatal(err)
			}
			_, plainSum, err := InjectLoRA(base.Clone(), tc.cfg, WithSeed(1))
			if err != nil {
				t.Fatal(err)
			}
			var outs int64
			for _, s := range sites {
				if s.Op != tc.op || !slices.Equal(s.Widths, tc.widths) || s.Magnitude == "" || !slices.Contains(sum.LoRA, s.Magnitude) || s.DoRANorm == "" {
					t.Fatalf("site %s: op %s widths %v magnitude %q norm %q, trainable %v", s.Module, s.Op, s.Widths, s.Magnitude, s.DoRANorm, sum.LoRA)
				}
				outs += s.Out
			}
			if sum.TrainableParams != plainSum.TrainableParams+outs {
				t.Errorf("trainable params: DoRA %d, LoRA %d, want LoRA + %d (a magnitude per packed column)", sum.TrainableParams, plainSum.TrainableParams, outs)
			}
			ref := runModel(t, base, tc.batch, 5, 0)
			freshDiff, where := maxRelDiff(t, runModel(t, adapted, tc.batch, 5, 0), ref)
			if freshDiff > tc.tol {
				t.Errorf("a fresh DoRA injection changes %s by %g", where, freshDiff)
			}

			randomizeB(t, adapted, sites, 3, 0.3)
			randomizeMagnitudes(t, adapted, sites, 4)
			got := runModel(t, adapted, tc.batch, 5, 0)
			if d, _ := maxRelDiff(t, got, ref); d < 1e-3 {
				t.Fatalf("DoRA changes the outputs by only %g", d)
			}
			expected := base.Clone()
			weights := map[string][]float64{}
			for _, s := range sites {
				weights[s.Weight] = expectPackedDoRA(t, base, adapted, s)
				if err := graph.SetFloat32s(expected.Initializer(s.Weight), narrow(weights[s.Weight])); err != nil {
					t.Fatal(err)
				}
			}
			want := runModel(t, expected, tc.batch, 5, 0)
			formulaDiff, where := maxRelDiff(t, got, want)
			if formulaDiff > tc.tol {
				t.Errorf("adapted differs from the base with W' of the formula by %g at %s", formulaDiff, where)
			}
			t.Logf("fresh vs base %.3g, adapted vs the formula %.3g", freshDiff, formulaDiff)

			// Merge takes the norm in float64, the graph in the branch's
			// type.
			mergeTol := max(1e-4, tc.tol)
			merged := adapted.Clone()
			if err := Merge(merged); err != nil {
				t.Fatal(err)
			}
			checkMergedDoRA(t, "Merge", base, merged, weights, got, tc.batch, mergeTol)
			ad, err := ExtractAdapter(adapted)
			if err != nil {
				t.Fatal(err)
			}
			direct := base.Clone()
			if err := MergeAdapter(direct, ad); err != nil {
				t.Fatal(err)
			}
			checkMergedDoRA(t, "MergeAdapter", base, direct, weights, got, tc.batch, mergeTol)

			back := throughHFDir(t, ad)
			if !back.LoRA.UseDoRA || back.Weights[sites[0].Module].Magnitude == nil {
				t.Fatalf("the HF directory lost DoRA")
			}
			applied := base.Clone()
			if _, _, err := ApplyLoRA(applied, back); err != nil {
				t.Fatal(err)
			}
			if d, where := maxRelDiff(t, runModel(t, applied, tc.batch, 5, 0), got); d > 1e-6 {
				t.Errorf("applied through HF differs from adapted by %g at %s", d, where)
			}

			un := merged.Clone()
			if _, _, err := Unmerge(un, back); err != nil {
				t.Fatal(err)
			}
			if d, where := maxRelDiff(t, runModel(t, un, tc.batch, 5, 0), got); d > mergeTol {
				t.Errorf("unmerged differs from adapted by %g at %s", d, where)
			}
			if rec, err := readDoRARecord(un); err != nil || len(rec.Merges) != 0 {
				t.Errorf("the unmerged model keeps DoRA norms: %+v %v", rec, err)
			}
			for _, s := range sites {
				w, u := values(t, base, s.Weight), values(t, un, s.Weight)
				scale := 0.0
				for _, x := range w {
					scale = math.Max(scale, math.Abs(x))
				}
				for k := range w {
					if math.Abs(u[k]-w[k]) > 1e-5*scale {
						t.Fatalf("unmerged %s[%d] = %v, base %v", s.Weight, k, u[k], w[k])
					}
				}
			}
		})
	}
}

// TestDoRAInsideAttentionRefusals checks what DoRA inside Attention
// refuses, as LoRA there does or as DoRA elsewhere does: dropout, which
// the node's inputs cannot take, and factors as graph inputs.
func TestDoRAInsideAttentionRefusals(t *testing.T) {
	base := optimizerGPT2(t, false)
	cfg := qvConfig(16, ".*c_attn")
	cfg.UseDoRA = true
	if _, _, err := InjectLoRA(base.Clone(), cfg, AsInputs()); err == nil || !strings.Contains(err.Error(), "AsInputs") {
		t.Errorf("DoRA inside Attention with AsInputs: got %v, want a refusal", err)
	}
	cfg.Dropout = 0.1
	if _, _, err := InjectLoRA(base.Clone(), cfg); err == nil || !strings.Contains(err.Error(), "fused Attention") {
		t.Errorf("DoRA inside Attention with dropout: got %v, want a refusal", err)
	}
}

// checkMergedDoRA checks a DoRA merge of a packed layer: the base's
// nodes and initializers, each packed weight W' of the formula (weights)
// to float32 rounding, a ‖V‖ kept per packed column, and the adapted
// model's outputs (want, to tol).
func checkMergedDoRA(t *testing.T, what string, base, merged *graph.Model, weights map[string][]float64, want map[string]*rt.Tensor, batch int, tol float64) {
	t.Helper()
	gotNodes, gotInits := names(merged)
	wantNodes, wantInits := names(base)
	if !slices.Equal(gotNodes, wantNodes) || !slices.Equal(gotInits, wantInits) {
		t.Errorf("%s: the merged model's nodes or initializers are not the base's", what)
	}
	for name, w := range weights {
		got := values(t, merged, name)
		scale := 0.0
		for _, x := range w {
			scale = math.Max(scale, math.Abs(x))
		}
		for k := range w {
			if math.Abs(got[k]-w[k]) > 1e-6*scale {
				t.Fatalf("%s: merged %s[%d] = %v, the formula %v", what, name, k, got[k], w[k])
			}
		}
	}
	rec, err := readDoRARecord(merged)
	if err != nil || len(rec.Merges) != len(weights) {
		t.Fatalf("%s: DoRA record %+v, %v; want %d merges", what, rec, err, len(weights))
	}
	if d, where := maxRelDiff(t, runModel(t, merged, batch, 5, 0), want); d > tol {
		t.Errorf("%s: merged differs from adapted by %g at %s", what, d, where)
	}
}
