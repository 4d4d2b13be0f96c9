package combine_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
)

// TestErrors checks what cannot be combined: each error starts with
// "combine: " and names the input, module or option at fault.
func TestErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	plain := func(r int) *adapter.Adapter {
		return lora(r, float64(r), false, map[string]adapter.LoRAWeights{"m": randomFactors(rng, 4, r, 5)})
	}
	prefix := adapter.NewPrefix(adapter.PrefixConfig{NumPrefixTokens: 2, NumHiddenLayers: 1, HiddenSize: 4, NumAttentionHeads: 1})
	dora := plain(2)
	dora.LoRA.UseDoRA = true
	fused := plain(2)
	fused.LoRA.EnableLoRAList = adapter.EnableLoRAList{All: []bool{true, false}}
	biased := plain(2)
	biased.Extra["m.bias"] = tensor(1, 5, 1, 2, 3, 4, 5)
	otherBase := plain(2)
	otherBase.LoRA.BaseModelName = "gpt2"
	llamaBase := plain(2)
	llamaBase.LoRA.BaseModelName = "meta-llama/Llama-3.2-1B"
	otherShape := lora(2, 2, false, map[string]adapter.LoRAWeights{"m": randomFactors(rng, 4, 2, 6)})
	empty := lora(2, 2, false, nil)
	nan := plain(2)
	nan.Weights["m"].B.Data[3] = float32(math.NaN())

	for _, test := range []struct {
		reason string
		in     []*adapter.Adapter
		o      combine.Options
		parts  []string
	}{
		{"no inputs", nil, combine.Options{Method: combine.Cat}, []string{"no adapters"}},
		{"unknown method", []*adapter.Adapter{plain(2)}, combine.Options{Method: "mean"}, []string{`unknown method "mean"`, "linear, cat, svd"}},
		{"prefix", []*adapter.Adapter{plain(2), prefix}, combine.Options{Method: combine.Cat}, []string{"a2 is a prefix adapter (PREFIX_TUNING)", "LoRA adapters"}},
		{"DoRA", []*adapter.Adapter{dora, plain(2)}, combine.Options{Method: combine.Cat}, []string{"a1 is a DoRA adapter (use_dora)"}},
		{"fused", []*adapter.Adapter{plain(2), fused}, combine.Options{Method: combine.Cat}, []string{"a2 has fused projections (enable_lora_list)"}},
		{"trained bias", []*adapter.Adapter{plain(2), biased}, combine.Options{Method: combine.Cat}, []string{"a2 also trains 1 base tensors (m.bias)", "not deltas"}},
		{"different bases", []*adapter.Adapter{otherBase, plain(2), llamaBase}, combine.Options{Method: combine.Cat}, []string{`a1 is for base model "gpt2" and a3 for "meta-llama/Llama-3.2-1B"`}},
		{"different shapes", []*adapter.Adapter{plain(2), otherShape}, combine.Options{Method: combine.Cat}, []string{`module "m" is [in 4, out 5] in a1 but [in 4, out 6] in a2`, "not of one base"}},
		{"no weights", []*adapter.Adapter{plain(2), empty}, combine.Options{Method: combine.Cat}, []string{"a2 holds a LoRA config but no weights"}},
		{"NaN", []*adapter.Adapter{plain(2), nan}, combine.Options{Method: combine.Cat}, []string{`a2: adapter: "m": lora_B: value [3] is NaN`}},
		{"linear, ranks differ", []*adapter.Adapter{plain(2), plain(3)}, combine.Options{Method: combine.Linear}, []string{`module "m" has rank 2 in a1 and 3 in a2`, "linear", "cat and svd do not"}},
		{"ties, ranks differ", []*adapter.Adapter{plain(2), plain(3)}, combine.Options{Method: combine.TIES, Density: 0.5}, []string{`module "m" has rank 2 in a1 and 3 in a2`, "ties"}},
		{"weights count", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.Cat, Weights: []float64{1}}, []string{"1 weights for 2 adapters"}},
		{"NaN weight", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.Cat, Weights: []float64{1, math.NaN()}}, []string{"weight 2 is NaN"}},
		{"no density", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.TIES}, []string{"ties needs a density in (0, 1]"}},
		{"density over 1", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.DARELinear, Density: 1.5}, []string{"dare_linear needs a density in (0, 1]", "1.5"}},
		{"density for linear", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.Linear, Density: 0.5}, []string{"a density applies to", "not linear"}},
		{"rank for cat", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.Cat, Rank: 2}, []string{"a rank applies to svd only, not cat"}},
		{"negative rank", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.SVD, Rank: -1}, []string{"rank must be positive"}},
		{"seed for ties", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.TIES, Density: 0.5, Seed: 3}, []string{"a seed applies to dare_linear and dare_ties only, not ties"}},
		{"sign for magnitude_prune", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.MagnitudePrune, Density: 0.5, MajoritySign: combine.SignFrequency}, []string{"a majority sign applies to ties and dare_ties only"}},
		{"bad sign", []*adapter.Adapter{plain(2), plain(2)}, combine.Options{Method: combine.TIES, Density: 0.5, MajoritySign: "median"}, []string{`majority sign must be total or frequency, got "median"`}},
	} {
		_, err := combine.Adapters(inputs(test.in...), test.o)
		if err == nil {
			t.Errorf("%s: got no error", test.reason)
			continue
		}
		if !strings.HasPrefix(err.Error(), "combine: ") {
			t.Errorf("%s: error %q does not start with \"combine: \"", test.reason, err)
		}
		for _, p := range test.parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: error %q does not contain %q", test.reason, err, p)
			}
		}
	}
}
