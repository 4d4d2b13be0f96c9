package rewrite

import (
	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// prefixRecord is what PrefixMetadataKey holds.
type prefixRecord struct {
	Version int         `json:"version"`
	Site    *PrefixSite `json:"site"`
}

// readPrefixRecord returns the prefix site that m records, or ok false
// when m has none.
func readPrefixRecord(m *graph.Model) (site *PrefixSite, ok bool, err error) {
	var rec prefixRecord
	if ok, err := readMetadataJSON(m, PrefixMetadataKey, &rec); !ok || err != nil {
		return nil, false, err
	}
	if rec.Site == nil || rec.Site.Prompt == "" {
		return nil, false, errorf("%s: model metadata %q records no prefix", modelLabel(m), PrefixMetadataKey)
	}
	return rec.Site, true, nil
}

// writePrefixRecord stores site in m's metadata, replacing an earlier one.
func writePrefixRecord(m *graph.Model, site *PrefixSite) error {
	return writeMetadataJSON(m, PrefixMetadataKey, prefixRecord{Version: 1, Site: site})
}

// PrefixSiteOf returns the prefix site that a model adapted by
// InjectPrefix or ApplyPrefix records, or an error when it carries none.
func PrefixSiteOf(m *graph.Model) (*PrefixSite, error) {
	site, ok, err := readPrefixRecord(m)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errorf("%s carries no prefix (no %q metadata)", modelLabel(m), PrefixMetadataKey)
	}
	return site, nil
}

// SummarizePrefix counts the parameters of a prefixed model, as
// print_trainable_parameters does: the prefix parameters are trainable,
// and all params counts every floating-point initializer but the helper
// constants that injection added.
func SummarizePrefix(m *graph.Model) (Summary, error) {
	site, err := PrefixSiteOf(m)
	if err != nil {
		return Summary{}, err
	}
	return summarizePrefix(m, site), nil
}

// summarizePrefix counts parameters for site; Extra names the prefix
// parameters.
func summarizePrefix(m *graph.Model, site *PrefixSite) Summary {
	helper := map[string]bool{}
	for _, name := range site.Initializers {
		helper[name] = true
	}
	sum := Summary{Extra: site.Trainable()}
	sum.countParams(m, helper)
	return sum
}

// ExtractPrefix returns the prefix adapter that a prefixed model carries
// (for export-adapter and save_pretrained): the config as injected, the
// prompt_embeddings table and, with a projection, its weights in graph
// layout, each tensor in the type the model stores it in.
//
// ExtractPrefix is Extract for prefix tuning only: a LoRA model is an
// error.
func ExtractPrefix(m *graph.Model) (*adapter.Adapter, error) {
	site, err := PrefixSiteOf(m)
	if err != nil {
		return nil, err
	}
	return extractPrefix(m, site, tensorReader(m, nil))
}

// extractPrefix returns the prefix adapter that site describes, with the
// values of its parameters from values.
func extractPrefix(m *graph.Model, site *PrefixSite, values func(name string) ([]float32, error)) (*adapter.Adapter, error) {
	var err error
	read := func(name string) (*adapter.Tensor, error) {
		init := m.Initializer(name)
		if init == nil {
			return nil, errorf("%s: prefix parameter %q is not an initializer", modelLabel(m), name)
		}
		if m.Input(name) != nil {
			return nil, errorf("%s: prefix parameter %q is a graph input; its value is fed, not stored", modelLabel(m), name)
		}
		v, err := values(name)
		if err != nil {
			return nil, err
		}
		return &adapter.Tensor{DType: adapterType(graph.TypeOf(init)), Shape: append([]int64(nil), init.Dims...), Data: v}, nil
	}
	ad := adapter.NewPrefix(site.Config)
	if ad.Prompt, err = read(site.Prompt); err != nil {
		return nil, err
	}
	if len(site.Projection) != 0 {
		if len(site.Projection) != 4 {
			return nil, errorf("%s: prefix metadata names %d projection tensors, want 4", modelLabel(m), len(site.Projection))
		}
		var t [4]*adapter.Tensor
		for i, name := range site.Projection {
			if t[i], err = read(name); err != nil {
				return nil, err
			}
		}
		ad.Projection = &adapter.PrefixProjection{W1: t[0], B1: t[1], W2: t[2], B2: t[3]}
	}
	if err := ad.Validate(); err != nil {
		return nil, errorf("%s: %w", modelLabel(m), err)
	}
	return ad, nil
}
