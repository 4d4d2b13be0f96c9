package rewrite

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// ApplyLoRA injects a saved LoRA adapter into base (PaddleNLP's and HF
// PEFT's from_pretrained; Apply takes either PEFT type): every module of
// ad gets a branch whose A and B hold ad's weights, with ad's rank,
// alpha, rsLoRA, dropout and dtype. ad's
// Extra tensors (trained biases and modules) replace the base's values.
//
// Modules are matched to layers by name (see FindLinears): exactly, or
// else where one name is the other with leading segments dropped
// ("transformer.h.0.attn.c_attn" and "h.0.attn.c_attn"), or else after
// treating "self_attn" as "attn", as the onnxruntime-genai builder renames
// it. A module that matches no layer or several, and factors whose shapes
// do not fit the layer, are errors naming the module and the layer or
// model; nothing changes then.
//
// With AsInputs, ad's modules get factors that are graph inputs instead
// (ad's shapes are still checked); Feeds then selects ad or others.
func ApplyLoRA(base *graph.Model, ad *adapter.Adapter, opts ...Option) ([]Site, Summary, error) {
	o, err := applyOptions(opts, loraOptions)
	if err != nil {
		return nil, Summary{}, err
	}
	if len(o.modules) > 0 {
		return nil, Summary{}, errorf("WithModules chooses layers for a fresh injection; an adapter brings its own modules")
	}
	cfg, err := loraConfigOf(ad)
	if err != nil {
		return nil, Summary{}, err
	}
	if len(cfg.TargetModules) == 0 {
		cfg.TargetModules = ad.Modules()
	}
	if err := checkConfig(&cfg); err != nil {
		return nil, Summary{}, err
	}
	linears, err := FindLayers(base)
	if err != nil {
		return nil, Summary{}, err
	}
	layers, err := resolveModules(base, linears, ad.Modules())
	if err != nil {
		return nil, Summary{}, err
	}
	keys := map[string]string{}
	weights := map[string]adapter.LoRAWeights{}
	for key, l := range layers {
		keys[l.Module] = key
		weights[l.Module] = ad.Weights[key]
	}
	var targets []Linear
	for _, l := range linears {
		if _, ok := keys[l.Module]; ok {
			targets = append(targets, l)
		}
	}
	extras, err := planExtras(base, linears, ad)
	if err != nil {
		return nil, Summary{}, err
	}
	sites, sum, err := inject(base, cfg, linears, targets, keys, weights, o)
	if err != nil {
		return nil, Summary{}, err
	}
	if err := setExtras(base, extras); err != nil {
		return nil, Summary{}, err
	}
	return sites, sum, nil
}

// loraConfigOf returns a copy of ad's LoRA config after checking ad.
func loraConfigOf(ad *adapter.Adapter) (adapter.LoRAConfig, error) {
	if ad == nil || ad.LoRA == nil {
		return adapter.LoRAConfig{}, errorf("not a LoRA adapter")
	}
	if err := ad.Validate(); err != nil {
		return adapter.LoRAConfig{}, errorf("%w", err)
	}
	if len(ad.Weights) == 0 {
		return adapter.LoRAConfig{}, errorf("adapter holds no LoRA weights")
	}
	return *ad.LoRA, nil
}

// resolveModules maps each adapter module name to a linear layer of m; see
// Apply for the rules.
func resolveModules(m *graph.Model, linears []Linear, names []string) (map[string]Linear, error) {
	byModule := map[string]Linear{}
	var modules []string
	for _, l := range linears {
		if _, ok := byModule[l.Module]; !ok {
			byModule[l.Module] = l
			modules = append(modules, l.Module)
		}
	}
	match, err := matchModules(m, names, modules, func(name string, err error) error {
		return errorf("adapter module %q %w in %s; its modules are: %s%s", name, err, modelLabel(m), moduleList(linears), nestedNote(m))
	})
	if err != nil {
		return nil, err
	}
	out := map[string]Linear{}
	for name, mod := range match {
		out[name] = byModule[mod]
	}
	return out, nil
}

// matchModules finds the module of m's modules that each adapter module
// of names stands for (matchModule), by name; two names that stand for one
// module are an error. notFound words the error of a name that stands for
// none, or for several.
func matchModules(m *graph.Model, names, modules []string, notFound func(name string, err error) error) (map[string]string, error) {
	match := map[string]string{}
	taken := map[string]string{}
	for _, name := range names {
		mod, err := matchModule(name, modules)
		if err != nil {
			return nil, notFound(name, err)
		}
		if prev, ok := taken[mod]; ok {
			return nil, errorf("adapter modules %q and %q both match layer %q of %s", prev, name, mod, modelLabel(m))
		}
		taken[mod] = name
		match[name] = mod
	}
	return match, nil
}

// matchModule finds the one module that name stands for. Its errors are
// phrases for the caller to place after the name.
func matchModule(name string, modules []string) (string, error) {
	if slices.Contains(modules, name) {
		return name, nil
	}
	for _, norm := range []func(string) string{func(s string) string { return s }, normalizeModule} {
		var found []string
		n := norm(name)
		for _, mod := range modules {
			x := norm(mod)
			if x == n || strings.HasSuffix(x, "."+n) || strings.HasSuffix(n, "."+x) {
				found = append(found, mod)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
			continue
		default:
			if len(found) > 4 {
				found = append(found[:4], "…")
			}
			return "", fmt.Errorf("matches several layers (%s)", strings.Join(found, ", "))
		}
	}
	return "", errors.New("matches no linear layer")
}

// normalizeModule spells module names the way the onnxruntime-genai model
// builder does.
func normalizeModule(s string) string {
	segs := strings.Split(s, ".")
	for i, seg := range segs {
		if seg == "self_attn" {
			segs[i] = "attn"
		}
	}
	return strings.Join(segs, ".")
}

// extraValue is a base initializer's new value from an adapter's Extra.
type extraValue struct {
	key    string
	name   string // the initializer
	values []float32
}

// planExtras maps ad's Extra tensors to base initializers and checks their
// shapes. "<module>.weight" and "<module>.bias" reach a linear layer's
// tensors by module name, wherever the exporter stored them; the weight is
// in PyTorch's nn.Linear layout [out, in] (or [in, out] with
// FanInFanOut, as GPT-2's Conv1D), and is laid out as the initializer
// stores it. Any other key must name an initializer of the same shape.
func planExtras(m *graph.Model, linears []Linear, ad *adapter.Adapter) ([]extraValue, error) {
	var out []extraValue
	keys := make([]string, 0, len(ad.Extra))
	for k := range ad.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var modules []string
	byModule := map[string]Linear{}
	for _, l := range linears {
		modules = append(modules, l.Module)
		byModule[l.Module] = l
	}
	fanInFanOut := ad.LoRA != nil && ad.LoRA.FanInFanOut
	for _, key := range keys {
		t := ad.Extra[key]
		if init := m.Initializer(key); init != nil && m.Input(key) == nil {
			if !slices.Equal(init.Dims, t.Shape) {
				return nil, errorf("adapter tensor %q has shape %v; initializer %q of %s is %v", key, t.Shape, key, modelLabel(m), init.Dims)
			}
			out = append(out, extraValue{key: key, name: key, values: t.Data})
			continue
		}
		i := strings.LastIndex(key, ".")
		if i < 0 {
			return nil, errorf("adapter tensor %q names no initializer of %s", key, modelLabel(m))
		}
		module, kind := key[:i], key[i+1:]
		found, err := matchModule(module, modules)
		if err != nil {
			return nil, errorf("adapter tensor %q names no initializer of %s, and its module %w", key, modelLabel(m), err)
		}
		l := byModule[found]
		switch kind {
		case "bias":
			init := m.Initializer(l.Bias)
			if l.Bias == "" || init == nil {
				return nil, layerErr(l, "adapter tensor %q is a bias, but the layer has none", key)
			}
			if graph.NumElements(init.Dims) != int64(len(t.Data)) || len(t.Shape) != 1 {
				return nil, layerErr(l, "adapter tensor %q has shape %v; bias %q is %v", key, t.Shape, l.Bias, init.Dims)
			}
			out = append(out, extraValue{key: key, name: l.Bias, values: t.Data})
		case "weight":
			if l.Kind != KindLinear {
				init := m.Initializer(l.Weight)
				if !slices.Equal(t.Shape, init.Dims) {
					return nil, layerErr(l, "adapter tensor %q has shape %v; the layer's weight %q is %v", key, t.Shape, l.Weight, init.Dims)
				}
				out = append(out, extraValue{key: key, name: l.Weight, values: t.Data})
				continue
			}
			want := []int64{l.Out, l.In}
			if fanInFanOut {
				want = []int64{l.In, l.Out}
			}
			if !slices.Equal(t.Shape, want) {
				return nil, layerErr(l, "adapter tensor %q has shape %v; the layer's weight needs %v", key, t.Shape, want)
			}
			vals := t.Data
			if fanInFanOut == l.WeightTransposed {
				vals = transpose(vals, int(t.Shape[0]), int(t.Shape[1]))
			}
			out = append(out, extraValue{key: key, name: l.Weight, values: vals})
		default:
			return nil, errorf("adapter tensor %q names no initializer of %s", key, modelLabel(m))
		}
	}
	return out, nil
}

// setExtras stores the planned values, each in its initializer's type.
func setExtras(m *graph.Model, extras []extraValue) error {
	for _, e := range extras {
		if err := graph.SetFloat32s(m.Initializer(e.name), e.values); err != nil {
			return errorf("adapter tensor %q: %w", e.key, err)
		}
	}
	return nil
}

// transpose returns the transpose of a rows×cols row-major matrix.
func transpose[T float32 | float64](v []T, rows, cols int) []T {
	out := make([]T, len(v))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = v[i*cols+j]
		}
	}
	return out
}
