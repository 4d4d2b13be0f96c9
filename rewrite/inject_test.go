package rewrite

import (
	"testing"
)

// TestInjectKeepsOutputs checks that a freshly injected model, B at zero,
// computes what the base does, on every real and built model, with and
// without dropout (inactive outside training).
func TestInjectKeepsOutputs(t *testing.T) {
	for _, tm := range append(append([]testModel(nil), realModels...), builtModels...) {
		for _, dropout := range []float64{0, 0.1} {
			t.Run(tm.name, func(t *testing.T) {
				base := tm.load(t)
				want := runModel(t, base, 1, 4, tm.past)
				m := base.Clone()
				cfg := config(4, 8, ".*")
				cfg.Dropout = dropout
				sites, sum, err := InjectLoRA(m, cfg, WithSeed(1))
				if err != nil {
					t.Fatal(err)
				}
				linears, err := FindLinears(base)
				if err != nil {
					t.Fatal(err)
				}
				layers, err := FindLayers(base)
				if err != nil {
					t.Fatal(err)
				}
				if tm.count > 0 && len(linears) != tm.count {
					t.Errorf("linear layers: got %d want %d", len(linears), tm.count)
				}
				if len(sites) != len(layers) {
					t.Errorf("sites: got %d, want one per layer, %d", len(sites), len(layers))
				}
				t.Logf("%d sites; %v", len(sites), sum)
				if base.Validate() == nil {
					if err := m.Validate(); err != nil {
						t.Errorf("adapted model does not validate: %v", err)
					}
				}
				got := runModel(t, m, 1, 4, tm.past)
				if d, where := maxRelDiff(t, got, want); d > 1e-6 {
					t.Errorf("fresh injection changed output %q by %g", where, d)
				}
			})
		}
	}
}
