package rewrite

import (
	"math"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
)

// TestMergeUnmergeSameModel merges an adapted model and unmerges it again
// on the same *graph.Model, with no reload in between, for LoRA and DoRA
// across the layer forms of TestLayerMath: Unmerge (and a second Merge and
// Unmerge after it) must give the adapted model back, with the names that
// ApplyLoRA gives a fresh base and its outputs. The removed branches'
// names were kept in the model's name index, so that Unmerge found
// "lora_A.weight" taken.
func TestMergeUnmergeSameModel(t *testing.T) {
	for i, tc := range layerCases {
		for _, dora := range []bool{false, true} {
			name := tc.name + "/lora"
			if dora {
				name = tc.name + "/dora"
			}
			t.Run(name, func(t *testing.T) {
				rng := newRand(uint64(i) + 40)
				base, _, _ := layerModel(t, tc, rng)
				feeds, _ := layerInput(t, tc, rng)
				var ad *adapter.Adapter
				if dora {
					ad = doraAdapter(tc, uint64(i)+140)
				} else {
					ad = layerAdapter(tc, rng)
				}
				adapted := base.Clone()
				if _, _, err := ApplyLoRA(adapted, ad); err != nil {
					t.Fatal(err)
				}
				want := run(t, session(t, adapted), feeds)["y"].ToFloat64()
				wantNodes, wantInits := names(adapted)
				tol := tc.tol
				if tc.wCast {
					tol = 2e-2 // the merged weight is stored in float16
				}

				m := adapted.Clone()
				for round := 1; round <= 2; round++ {
					if err := Merge(m); err != nil {
						t.Fatalf("round %d: Merge: %v", round, err)
					}
					if _, _, err := Unmerge(m, ad); err != nil {
						t.Fatalf("round %d: Unmerge on the merged model: %v", round, err)
					}
					gotNodes, gotInits := names(m)
					if !slices.Equal(gotNodes, wantNodes) || !slices.Equal(gotInits, wantInits) {
						t.Fatalf("round %d: unmerged names: nodes %v inits %v, want %v %v", round, gotNodes, gotInits, wantNodes, wantInits)
					}
					if err := m.Validate(); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					got := run(t, session(t, m), feeds)["y"].ToFloat64()
					for j := range want {
						if d := math.Abs(got[j]-want[j]) / math.Max(1, math.Abs(want[j])); !(d <= tol) {
							t.Fatalf("round %d: y[%d]: got %v want %v", round, j, got[j], want[j])
						}
					}
				}
				// Injecting after a merge names the branches as on a fresh base.
				if err := Merge(m); err != nil {
					t.Fatal(err)
				}
				fresh := base.Clone()
				if _, _, err := InjectLoRA(fresh, *ad.LoRA); err != nil {
					t.Fatal(err)
				}
				if _, _, err := InjectLoRA(m, *ad.LoRA); err != nil {
					t.Fatalf("InjectLoRA on the merged model: %v", err)
				}
				freshNodes, freshInits := names(fresh)
				gotNodes, gotInits := names(m)
				if !slices.Equal(gotNodes, freshNodes) || !slices.Equal(gotInits, freshInits) {
					t.Errorf("injected after merge: nodes %v inits %v, want %v %v", gotNodes, gotInits, freshNodes, freshInits)
				}
			})
		}
	}
}

// TestMergeUnmergeSameInt4Model is TestMergeUnmergeSameModel on the int4
// LLaMA, LoRA and DoRA on every layer: Merge with Dequantize makes the
// layers float MatMuls named as before quantization and drops the packed
// tensors; Unmerge on the same model then rebuilds the branches, and the
// model computes the adapted one's logits.
func TestMergeUnmergeSameInt4Model(t *testing.T) {
	base, _ := int4Builder(t)
	for _, dora := range []bool{false, true} {
		cfg := config(4, 8, ".*_proj", "lm_head")
		cfg.UseDoRA = dora
		m := base.Clone()
		sites, _, err := InjectLoRA(m, cfg, WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		randomizeB(t, m, sites, 3, 0.05)
		want := runModel(t, m, 2, 5, 0)
		ad, err := ExtractAdapter(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := Merge(m, Dequantize()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Unmerge(m, ad); err != nil {
			t.Fatalf("DoRA %v: Unmerge on the merged model: %v", dora, err)
		}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		if d, where := maxRelDiff(t, runModel(t, m, 2, 5, 0), want); !(d <= 1e-4) {
			t.Errorf("DoRA %v: unmerged output %q differs from the adapted model's by %g", dora, where, d)
		}
	}
}
