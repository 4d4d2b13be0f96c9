package rewrite

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// stackedFeeds returns the stacked inputs of st for slots, slot k's
// factors by module (slots[0], the base, nil): A, B and, in a stack of
// StackDoRA, the gain; zeros (a gain of one) where a slot has no factors
// for a site.
func stackedFeeds(t *testing.T, st *Stacked, slots []map[string]StackedFactor) map[string]*rt.Tensor {
	t.Helper()
	k := len(slots)
	feeds := map[string]*rt.Tensor{}
	for _, s := range st.Sites {
		r := 1
		for _, f := range slots {
			r = max(r, f[s.Module].R)
		}
		in, out := int(s.In), int(s.Out)
		a, b, g := make([]float32, k*in*r), make([]float32, k*r*out), make([]float32, k*out)
		for i := range g {
			g[i] = 1
		}
		for slot, f := range slots {
			fa, ok := f[s.Module]
			if !ok {
				continue
			}
			for i := range in {
				for c := range fa.R {
					a[(slot*in+i)*r+c] = fa.A[i*fa.R+c]
				}
			}
			for c := range fa.R {
				for o := range out {
					b[(slot*r+c)*out+o] = fa.B[c*out+o]
				}
			}
			copy(g[slot*out:], fa.Gain)
		}
		feeds[s.A] = mustT(t)(rt.NewFloat32([]int64{int64(k), int64(in), int64(r)}, a))
		feeds[s.B] = mustT(t)(rt.NewFloat32([]int64{int64(k), int64(r), int64(out)}, b))
		if s.Gain != "" {
			feeds[s.Gain] = mustT(t)(rt.NewFloat32([]int64{int64(k), 1, int64(out)}, g))
		}
	}
	return feeds
}

// TestStackDoRAMath runs the one-layer models of TestDoRAMath that
// stacking takes (MatMul and Gemm, bias, α and β, a cast and transposed
// weight, float16) stacked with StackDoRA, the rows of the batch on a DoRA
// adapter, a plain LoRA adapter and the base in turn, and holds each row
// to the float64 formulas of expectDoRA and expectLayer.
func TestStackDoRAMath(t *testing.T) {
	for i, tc := range layerCases {
		if tc.transA || tc.enable != nil {
			continue // refused by stacking, or by stacked factors
		}
		t.Run(tc.name, func(t *testing.T) {
			rng := newRand(uint64(i) + 40)
			base, weff, bias := layerModel(t, tc, rng)
			feeds, x64 := layerInput(t, tc, rng)
			dora := doraAdapter(tc, uint64(i)+140)
			lora := layerAdapter(tc, rng)
			none := layerAdapter(tc, rng)
			clear(none.Weights["layer.proj"].B.Data)

			stacked := base.Clone()
			defer stacked.Close()
			st, err := StackDoRA(stacked)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Sites) != 1 || st.Sites[0].Gain != "layer.proj.dora_gain.stacked" {
				t.Fatalf("sites %+v, want layer.proj with a gain input", st.Sites)
			}
			fd, err := st.Factors(dora)
			if err != nil {
				t.Fatal(err)
			}
			fl, err := st.Factors(lora)
			if err != nil {
				t.Fatal(err)
			}
			if fl["layer.proj"].Gain != nil || len(fd["layer.proj"].Gain) != tc.out {
				t.Fatalf("gains: LoRA %v, DoRA %v; want none and %d", fl["layer.proj"].Gain, fd["layer.proj"].Gain, tc.out)
			}
			sfeeds := stackedFeeds(t, st, []map[string]StackedFactor{nil, fl, fd})
			all := map[string]*rt.Tensor{}
			for k, v := range feeds {
				all[k] = v
			}
			for k, v := range sfeeds {
				all[k] = v
			}
			batch := int(tc.xShape[0])
			index := make([]int64, batch)
			for b := range index {
				index[b] = int64(2 - b%3) // DoRA, LoRA, base, DoRA, …
			}
			all[StackedIndexInput] = mustT(t)(rt.NewInt64([]int64{int64(batch)}, index))
			got := run(t, session(t, stacked), all)["y"].ToFloat64()

			want := [][]float64{
				expectLayer(tc, x64, weff, bias, none),
				expectLayer(tc, x64, weff, bias, lora),
				expectDoRA(tc, x64, weff, bias, dora),
			}
			per := len(got) / batch
			for k := range got {
				w := want[index[k/per]][k]
				if d := math.Abs(got[k]-w) / math.Max(1, math.Abs(w)); d > tc.tol || math.IsNaN(got[k]) {
					t.Fatalf("y[%d] (row %d, slot %d): got %v want %v", k, k/per, index[k/per], got[k], w)
				}
			}
			if d := maxAbsDiff(want[2], want[1]); d < 1e-2 {
				t.Fatalf("DoRA and LoRA differ by %g only; the test proves nothing", d)
			}
		})
	}
}

// maxAbsDiff returns the largest |a[i] − b[i]|: +Inf where the lengths
// differ or a value is NaN.
func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		e := math.Abs(a[i] - b[i])
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = math.Max(d, e)
	}
	return d
}

// TestStackDoRA runs one batch on a model stacked with StackDoRA whose rows
// use a DoRA adapter, a plain LoRA adapter on other layers and the base,
// and holds each row to the model with that adapter applied (ApplyLoRA:
// the adapted, unmerged model), on ONNX Runtime; the rows of the base and
// the LoRA adapter are those of StackLoRA, bit for bit in float32.
func TestStackDoRA(t *testing.T) {
	for _, tm := range builtModels {
		if !slices.Contains([]string{"llama", "llama-fp16", "gpt2", "gpt2-gemm"}, tm.name) {
			continue
		}
		t.Run(tm.name, func(t *testing.T) {
			base := tm.load(t)
			linears, err := FindLinears(base)
			if err != nil {
				t.Fatal(err)
			}
			var mods []string
			for _, l := range linears[:5] {
				mods = append(mods, regexp.QuoteMeta(l.Module))
			}
			dcfg := config(2, 4, mods[:3]...)
			dcfg.UseDoRA = true
			dora := stackTestAdapter(t, base, dcfg, 7)
			for mod, w := range dora.Weights {
				for j := range w.Magnitude.Data {
					w.Magnitude.Data[j] *= float32(0.7 + 0.1*float64(j%7))
				}
				dora.Weights[mod] = w
			}
			lora := stackTestAdapter(t, base, config(3, 6, mods[2:]...), 8)
			ads := []*adapter.Adapter{lora, dora}

			stacked := base.Clone()
			defer stacked.Close()
			st, err := StackDoRA(stacked)
			if err != nil {
				t.Fatal(err)
			}
			bs := session(t, base)
			feeds := feedsFor(t, bs, 3, 2, tm.past, 9)
			want := []map[string]*rt.Tensor{run(t, bs, feeds)}
			slots := []map[string]StackedFactor{nil}
			for _, ad := range ads {
				adapted := base.Clone()
				defer adapted.Close()
				if _, _, err := ApplyLoRA(adapted, ad); err != nil {
					t.Fatal(err)
				}
				want = append(want, run(t, session(t, adapted), feeds))
				f, err := st.Factors(ad)
				if err != nil {
					t.Fatal(err)
				}
				slots = append(slots, f)
			}
			sfeeds := stackedFeeds(t, st, slots)
			for k, v := range feeds {
				sfeeds[k] = v
			}
			sfeeds[StackedIndexInput] = mustT(t)(rt.NewInt64([]int64{3}, []int64{2, 0, 1}))
			got := run(t, session(t, stacked), sfeeds)
			// The rows of the base and the LoRA adapter are StackLoRA's,
			// exactly in float32 (ONNX Runtime computes a chain of float16
			// nodes on the CPU in float32, rounding once at the end).
			plainStack := base.Clone()
			defer plainStack.Close()
			pst, err := StackLoRA(plainStack)
			if err != nil {
				t.Fatal(err)
			}
			pfeeds := map[string]*rt.Tensor{}
			for k, v := range sfeeds {
				pfeeds[k] = v
			}
			for _, s := range st.Sites {
				delete(pfeeds, s.Gain)
			}
			plainOut := run(t, session(t, plainStack), pfeeds)
			for name, p := range plainOut {
				for _, row := range []int{1, 2} {
					g, w := rowOf(t, got[name], row).ToFloat64(), rowOf(t, p, row).ToFloat64()
					if d := maxAbsDiff(g, w); tm.name != "llama-fp16" && d != 0 || d > tm.tol {
						t.Errorf("row %d, output %s: not StackLoRA's output exactly (differs by %g)", row, name, maxAbsDiff(g, w))
					}
				}
			}
			if len(pst.Sites) != len(st.Sites) {
				t.Fatalf("StackLoRA has %d sites, StackDoRA %d", len(pst.Sites), len(st.Sites))
			}
			for row, slot := range []int{2, 0, 1} {
				for name, wt := range want[slot] {
					g := rowOf(t, got[name], row)
					if d, _ := maxRelDiff(t, map[string]*rt.Tensor{name: g}, map[string]*rt.Tensor{name: rowOf(t, wt, row)}); d > tm.tol {
						t.Errorf("row %d (slot %d), output %s: differs from the adapted model by %g", row, slot, name, d)
					}
				}
			}
			merged := base.Clone()
			defer merged.Close()
			cfg := *dora.LoRA
			cfg.UseDoRA = false
			plain := adapter.NewLoRA(cfg)
			for mod, w := range dora.Weights {
				plain.Weights[mod] = adapter.LoRAWeights{A: w.A, B: w.B}
			}
			if err := MergeAdapter(merged, plain); err != nil {
				t.Fatal(err)
			}
			if d, _ := maxRelDiff(t, want[2], run(t, session(t, merged), feeds)); d < 1e-3 {
				t.Fatalf("the DoRA adapter differs from its factors without DoRA by %g only; the test proves nothing", d)
			}
		})
	}
}

// TestStackDoRARefusals: a stack of StackLoRA refuses a DoRA adapter,
// naming StackDoRA; StackDoRA refuses an int4 layer, which DoRA cannot
// rescale, changing nothing; a DoRA adapter without its magnitude is refused.
func TestStackDoRARefusals(t *testing.T) {
	tc := layerCases[0]
	base, _, _ := layerModel(t, tc, newRand(1))
	defer base.Close()
	dora := doraAdapter(tc, 2)
	plain := base.Clone()
	defer plain.Close()
	st, err := StackLoRA(plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Factors(dora); err == nil || !strings.Contains(err.Error(), "StackDoRA") {
		t.Errorf("StackLoRA's Factors of a DoRA adapter: %v, want an error naming StackDoRA", err)
	}
	d := base.Clone()
	defer d.Close()
	if st, err = StackDoRA(d); err != nil {
		t.Fatal(err)
	}
	w := dora.Weights["layer.proj"]
	w.Magnitude = nil
	dora.Weights["layer.proj"] = w
	if _, err := st.Factors(dora); err == nil || !strings.Contains(err.Error(), "lora_magnitude_vector") {
		t.Errorf("Factors of a DoRA adapter without magnitude: %v, want an error naming lora_magnitude_vector", err)
	}

	q, _ := int4Builder(t)
	defer q.Close()
	before, err := q.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = StackDoRA(q)
	if err == nil || !strings.Contains(err.Error(), "use_dora") || !strings.Contains(err.Error(), "MatMulNBits") {
		t.Fatalf("StackDoRA of an int4 model: %v, want DoRA's refusal of MatMulNBits", err)
	}
	if after, _ := q.Marshal(); !slices.Equal(before, after) {
		t.Error("StackDoRA changed the model it refused")
	}
}

// A com.microsoft Attention layer computes q, k and v inside the node, so
// a stacked branch (added to a layer's output) cannot reach it: without
// targets the stack leaves it out, and an adapter of it is refused;
// named as a target it is refused, with nothing changed.
func TestStackLeavesOutFusedAttention(t *testing.T) {
	c := models.GPT2Tiny()
	c.Producer = models.TransformerOptimizer
	for _, dora := range []bool{false, true} {
		m, err := models.GPT2(c)
		if err != nil {
			t.Fatal(err)
		}
		st, err := stack(m, dora, nil)
		if err != nil {
			t.Fatalf("dora %v: %v", dora, err)
		}
		if len(st.Sites) == 0 {
			t.Fatalf("dora %v: no sites", dora)
		}
		for _, site := range st.Sites {
			if strings.HasSuffix(site.Module, "attn.c_attn") {
				t.Errorf("dora %v: the stack has a branch on the fused Attention layer %s", dora, site.Module)
			}
		}
		m.Close()
		m, err = models.GPT2(c)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := m.Marshal()
		_, err = stack(m, dora, []string{".*c_attn"})
		if err == nil || !strings.Contains(err.Error(), "Attention") || !strings.Contains(err.Error(), "c_attn") {
			t.Errorf("dora %v: stacking on c_attn: %v, want a refusal naming the layer and Attention", dora, err)
		}
		if after, _ := m.Marshal(); !slices.Equal(before, after) {
			t.Errorf("dora %v: the refused stack changed the model", dora)
		}
		m.Close()
	}
}
