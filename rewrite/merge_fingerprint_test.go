package rewrite

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// trainedLayer injects cfg into a clone of base and sets A and B of its
// one site to random values, as training would.
func trainedLayer(t *testing.T, base *graph.Model, cfg adapter.LoRAConfig, rng *rand.Rand) *graph.Model {
	t.Helper()
	m := base.Clone()
	sites, _, err := InjectLoRA(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sites[0].A, sites[0].B} {
		tensor := m.Initializer(name)
		v := make([]float32, graph.NumElements(tensor.Dims))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.3)
		}
		if err := graph.SetFloat32s(tensor, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestUnmergeFingerprint merges an adapter, and a PiSSA-started model,
// and unmerges them: the right adapter comes off (the base weights come
// back, the fingerprint leaves the metadata); an adapter that differs in
// one factor value by 0.1% is refused with the model unchanged; a model
// merged without fingerprints takes any adapter, as before.
func TestUnmergeFingerprint(t *testing.T) {
	for _, init := range []adapter.LoRAInit{adapter.InitKaiming, adapter.InitPiSSA} {
		for _, ci := range []int{0, 3} { // matmul, gemm-transB-alpha-beta
			tc := layerCases[ci]
			t.Run(string(init)+"/"+tc.name, func(t *testing.T) {
				rng := newRand(uint64(ci) + 70)
				base, _, _ := layerModel(t, tc, rng)
				cfg := config(tc.r, tc.loraA, "layer.proj")
				cfg.InitLoRAWeights = init
				trained := trainedLayer(t, base, cfg, rng)
				ad, err := ExtractAdapter(trained)
				if err != nil {
					t.Fatal(err)
				}
				merged := trained.Clone()
				if err := Merge(merged); err != nil {
					t.Fatal(err)
				}
				if init == adapter.InitKaiming {
					direct := base.Clone()
					if err := MergeAdapter(direct, ad); err != nil {
						t.Fatal(err)
					}
					merged = direct
				}
				rec, err := readMergeFingerprints(merged)
				if err != nil || len(rec.Merges) != 1 || rec.Merges[0].Module != "layer.proj" {
					t.Fatalf("merge fingerprints %+v, %v; want one for layer.proj", rec, err)
				}

				// Another adapter: one value of B off by 0.1%.
				other := *ad
				other.Weights = map[string]adapter.LoRAWeights{}
				for k, w := range ad.Weights {
					b := *w.B
					b.Data = slices.Clone(b.Data)
					b.Data[len(b.Data)/2] *= 1.001
					w.B = &b
					other.Weights[k] = w
				}
				wrong := merged.Clone()
				if _, _, err := Unmerge(wrong, &other); err == nil || !strings.Contains(err.Error(), "not merged with this adapter") {
					t.Fatalf("Unmerge with another adapter: got %v, want a refusal", err)
				}
				a, b := initValues(t, wrong), initValues(t, merged)
				for name, v := range b {
					if !slices.Equal(a[name], v) {
						t.Errorf("a refused Unmerge changed %q", name)
					}
				}

				un := merged.Clone()
				if _, _, err := Unmerge(un, ad); err != nil {
					t.Fatal(err)
				}
				if rec, err := readMergeFingerprints(un); err != nil || len(rec.Merges) != 0 {
					t.Errorf("unmerged model keeps fingerprints %+v, %v", rec, err)
				}
				// Unmerge gives the original base weight back (for PiSSA, W,
				// not the residual), with the converted adapter's branches.
				got, want := values(t, un, "layer.proj.weight"), values(t, base, "layer.proj.weight")
				for i := range want {
					if d := math.Abs(got[i] - want[i]); d > 1e-5*math.Max(1, math.Abs(want[i])) {
						t.Fatalf("unmerged weight [%d] = %v, base %v", i, got[i], want[i])
					}
				}
				if _, err := Sites(un); err != nil {
					t.Errorf("unmerged model has no branches: %v", err)
				}

				legacy := merged.Clone()
				if err := (mergeFingerprints{}).write(legacy, MergeMetadataKey); err != nil {
					t.Fatal(err)
				}
				if _, _, err := Unmerge(legacy, &other); err != nil {
					t.Errorf("Unmerge of a model without fingerprints: %v", err)
				}
			})
		}
	}
}
