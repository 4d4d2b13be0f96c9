package rewrite

import (
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// Feeds returns the graph inputs that select adapter ad on a model that
// InjectLoRA adapted with AsInputs, by input name: each module's A as it
// is, and its B multiplied by the module's scaling s (alpha/r or
// alpha/√r, from ad's config), because the graph has no scaling node: s
// changes with the rank, and the rank is only known when the adapter is
// fed. The tensors carry the element type of the inputs. Modules of the
// model that ad lacks are left out: fed nothing, they keep their rank-0
// defaults and add nothing. Modules are matched as Apply matches them.
func Feeds(m *graph.Model, ad *adapter.Adapter) (map[string]*adapter.Tensor, error) {
	rec, err := mustRecord(m)
	if err != nil {
		return nil, err
	}
	cfg, err := loraConfigOf(ad)
	if err != nil {
		return nil, err
	}
	if cfg.UseDoRA {
		return nil, errorf("%s takes LoRA factors as inputs; a DoRA adapter (use_dora) also rescales each output feature by its magnitude over ‖W + s·A·B‖, which fed A and B cannot express: serve it merged (peftonnx merge) or applied (peftonnx apply)", modelLabel(m))
	}
	bySite := map[string]Site{}
	var modules []string
	for _, s := range rec.Sites {
		if !s.AsInputs {
			return nil, errorf("%s: layer %q holds its LoRA factors as initializers; only a model injected with AsInputs takes them as inputs", modelLabel(m), s.Module)
		}
		if _, ok := bySite[s.Module]; !ok {
			bySite[s.Module] = s
			modules = append(modules, s.Module)
		}
	}
	match, err := matchModules(m, ad.Modules(), modules, func(key string, err error) error {
		return errorf("adapter module %q %w with LoRA inputs in %s; those are: %s", key, err, modelLabel(m), joinNames(modules))
	})
	if err != nil {
		return nil, err
	}
	out := map[string]*adapter.Tensor{}
	for _, key := range ad.Modules() {
		mod := match[key]
		s := bySite[mod]
		if enable := cfg.EnableFor(key); !slices.Equal(enable, s.Enable) {
			return nil, errorf("adapter module %q has enable_lora_list %v; layer %q of %s was built for %v", key, enable, mod, modelLabel(m), s.Enable)
		}
		w := ad.Weights[key]
		r := w.B.Shape[0] // r, where A holds r per enabled part of a fused projection
		if w.Conv() {
			r = w.Rank()
		}
		aShape, bShape := s.AShape(r), s.BShape(r)
		if !slices.Equal(w.A.Shape, aShape) || !slices.Equal(w.B.Shape, bShape) {
			return nil, errorf("adapter module %q has lora_A %v and lora_B %v; layer %q of %s (weight %q, %d×%d) needs [%d, r·%d] and %v",
				key, w.A.Shape, w.B.Shape, mod, modelLabel(m), s.Weight, s.In, s.Out, s.In, s.Parts(), bShape)
		}
		scale := float32(cfg.ScalingFor(key))
		b := make([]float32, len(w.B.Data))
		for i, v := range w.B.Data {
			b[i] = v * scale
		}
		dt := adapterType(s.DType)
		out[s.A] = &adapter.Tensor{DType: dt, Shape: slices.Clone(aShape), Data: slices.Clone(w.A.Data)}
		out[s.B] = &adapter.Tensor{DType: dt, Shape: slices.Clone(bShape), Data: b}
	}
	return out, nil
}

// joinNames lists names for messages.
func joinNames(names []string) string {
	return moduleList(linearsNamed(names))
}

// linearsNamed wraps module names as Linears, for moduleList.
func linearsNamed(names []string) []Linear {
	ls := make([]Linear, len(names))
	for i, n := range names {
		ls[i] = Linear{Module: n}
	}
	return ls
}
