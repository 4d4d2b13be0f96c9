package rewrite

import (
	"math"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
)

// setFactor fills the initializer name of m with v.
func setFactor(t *testing.T, m *graph.Model, name string, v float32) {
	t.Helper()
	init := m.Initializer(name)
	vals := make([]float32, graph.NumElements(init.Dims))
	for i := range vals {
		vals[i] = v
	}
	if err := graph.SetFloat32s(init, vals); err != nil {
		t.Fatal(err)
	}
}

// TestNonFiniteAdapters merges, extracts and applies adapters that hold
// NaN or infinity, or finite factors whose product float32 or float16
// cannot hold (issue 16, E7): each is an error naming the tensor or
// weight, and the model is not changed.
func TestNonFiniteAdapters(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model int // into builtModels
		a, b  float32
		merge string
		other string // ExtractAdapter's and ApplyLoRA's error
	}{
		{"NaN in A", 0, float32(math.NaN()), 0.5, "lora_A.weight\": value [0] is NaN", "is NaN"},
		{"Inf in B", 0, 0.5, float32(math.Inf(1)), "lora_B.weight\": value [0] is +Inf", "is +Inf"},
		{"product past float32", 0, 1e20, 1e20, "merging overflows float32", "past float32"},
		{"product past float16", 1, 200, 200, "merging overflows float16", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := builtModels[tc.model].load(t)
			base := m.Clone()
			sites, _, err := InjectLoRA(m, config(4, 8, ".*q_proj"))
			if err != nil {
				t.Fatal(err)
			}
			setFactor(t, m, sites[0].A, tc.a)
			setFactor(t, m, sites[0].B, tc.b)
			before := graphBytes(t, m)
			if err := Merge(m); err == nil || !strings.Contains(err.Error(), tc.merge) {
				t.Errorf("Merge: got %v, want an error containing %q", err, tc.merge)
			}
			if graphBytes(t, m) != before {
				t.Error("the refused Merge changed the model")
			}
			if tc.other == "" {
				return // float16 factors of 200 are a float16 branch's own values
			}
			_, err = ExtractAdapter(m)
			if err == nil || !strings.Contains(err.Error(), tc.other) || !strings.Contains(err.Error(), sites[0].Module) {
				t.Errorf("ExtractAdapter: got %v, want an error naming %s and containing %q", err, sites[0].Module, tc.other)
			}
			// The same adapter, built by hand, applied to the base.
			a, _ := m.Float32s(m.Initializer(sites[0].A))
			b, _ := m.Float32s(m.Initializer(sites[0].B))
			good, err := ExtractAdapter(mergeable(t, tc.model))
			if err != nil {
				t.Fatal(err)
			}
			w := good.Weights[sites[0].Module]
			copy(w.A.Data, a)
			copy(w.B.Data, b)
			ad := good
			baseBefore := graphBytes(t, base)
			if _, _, err := ApplyLoRA(base, ad); err == nil || !strings.Contains(err.Error(), tc.other) {
				t.Errorf("ApplyLoRA: got %v, want an error containing %q", err, tc.other)
			}
			if err := MergeAdapter(base, ad); err == nil {
				t.Error("MergeAdapter: got no error")
			}
			if graphBytes(t, base) != baseBefore {
				t.Error("a refused ApplyLoRA or MergeAdapter changed the base")
			}
		})
	}
}

// mergeable returns builtModels[i] with LoRA on q_proj, fit to extract.
func mergeable(t *testing.T, i int) *graph.Model {
	t.Helper()
	m := builtModels[i].load(t)
	if _, _, err := InjectLoRA(m, config(4, 8, ".*q_proj")); err != nil {
		t.Fatal(err)
	}
	return m
}
