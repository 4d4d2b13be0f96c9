package combine

import (
	"maps"
	"regexp"
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
)

// config returns the combined adapter's config: the first input's, as PEFT
// copies it, with scaling 1 in every module (r = lora_alpha, no rsLoRA),
// each module's own rank recorded where it is not r, target_modules that
// name exactly the combined modules, and no trainable base tensors.
func (c *combiner) config(weights map[string]adapter.LoRAWeights) adapter.LoRAConfig {
	cfg := *c.inputs[0].Adapter.LoRA
	ranks := map[string]int{}
	for m, w := range weights {
		ranks[m] = int(w.A.Shape[1])
	}
	r := commonRank(ranks)
	cfg.R, cfg.Alpha, cfg.UseRSLoRA = r, float64(r), false
	cfg.RankPattern, cfg.AlphaPattern = nil, nil
	cfg.TargetModules = nil
	for _, m := range slices.Sorted(maps.Keys(ranks)) {
		cfg.TargetModules = append(cfg.TargetModules, moduleRegexp(m))
		if ranks[m] == r {
			continue
		}
		if cfg.RankPattern == nil {
			cfg.RankPattern, cfg.AlphaPattern = map[string]int{}, map[string]float64{}
		}
		key := regexp.QuoteMeta(m)
		cfg.RankPattern[key] = ranks[m]
		cfg.AlphaPattern[key] = float64(ranks[m])
	}
	cfg.LayersToTransform, cfg.LayersPattern = nil, nil
	cfg.TrainableModules, cfg.TrainableBias = nil, adapter.BiasNone
	cfg.EnableLoRAList, cfg.HeadDim = adapter.EnableLoRAList{}, 0
	for _, in := range c.inputs {
		if cfg.BaseModelName == "" {
			cfg.BaseModelName = in.Adapter.LoRA.BaseModelName
		}
		if cfg.Revision == "" {
			cfg.Revision = in.Adapter.LoRA.Revision
		}
	}
	return cfg
}

// commonRank returns the rank most modules have; of equally common ranks,
// the largest.
func commonRank(ranks map[string]int) int {
	count := map[int]int{}
	for _, r := range ranks {
		count[r]++
	}
	best := 0
	for r, n := range count {
		if n > count[best] || (n == count[best] && r > best) {
			best = r
		}
	}
	return best
}

// moduleRegexp returns the target_modules regex of one module name, in
// the form that HF PEFT's adapter_config.json writes as the plain name.
func moduleRegexp(module string) string {
	return `(?:.*\.)?` + regexp.QuoteMeta(module)
}
