package rewrite

import (
	"errors"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// This file is the one surface over both PEFT types: AdapterConfig,
// Extract, Summarize and Apply read an adapted model's records and decide
// between LoRA and prefix tuning themselves. The typed functions beside
// them (ExtractAdapter and ExtractPrefix, ApplyLoRA and ApplyPrefix,
// SummarizePrefix, Sites and PrefixSiteOf) do one type each.

// ErrNoAdapter is the error, wrapped, of AdapterConfig, Extract and
// Summarize for a model that carries neither LoRA branches nor a prefix.
var ErrNoAdapter = errors.New("carries no LoRA branch and no prefix")

// adaptedRecords holds what a model records about its adapter: lora is
// nil without LoRA branches, prefix nil without a prefix.
type adaptedRecords struct {
	lora   *record
	prefix *PrefixSite
}

// readAdapted reads m's records. A model with neither is ErrNoAdapter; one
// with both (which Apply and the injections never make) is an error too,
// since an adapter holds one PEFT type.
func readAdapted(m *graph.Model) (adaptedRecords, error) {
	var r adaptedRecords
	rec, ok, err := readRecord(m)
	if err != nil {
		return r, err
	}
	if ok && len(rec.Sites) > 0 {
		r.lora = &rec
	}
	if r.prefix, _, err = readPrefixRecord(m); err != nil {
		return r, err
	}
	switch {
	case r.lora == nil && r.prefix == nil:
		return r, errorf("%s %w (no %q or %q metadata)", modelLabel(m), ErrNoAdapter, MetadataKey, PrefixMetadataKey)
	case r.lora != nil && r.prefix != nil:
		return r, errorf("%s carries both LoRA branches and a prefix; an adapter holds one PEFT type", modelLabel(m))
	}
	return r, nil
}

// AdapterConfig returns the config that an adapted model records, without
// reading any weight: a *adapter.LoRAConfig for a model that InjectLoRA or
// Apply gave LoRA branches (rsLoRA, LoRA+ scale and the rest as injected),
// or a *adapter.PrefixConfig, completed from the graph, for a prefixed
// one. The config is a copy. A model with neither is an error that wraps
// ErrNoAdapter.
func AdapterConfig(m *graph.Model) (adapter.Config, error) {
	r, err := readAdapted(m)
	if err != nil {
		return nil, err
	}
	if r.prefix != nil {
		cfg := r.prefix.Config
		return &cfg, nil
	}
	cfg := r.lora.Config
	return &cfg, nil
}

// Extract returns the adapter that an adapted model carries, LoRA
// (ExtractAdapter) or prefix (ExtractPrefix): what save_pretrained saves.
// A model with neither is an error that wraps ErrNoAdapter.
func Extract(m *graph.Model) (*adapter.Adapter, error) {
	return ExtractValues(m, nil)
}

// ExtractValues is Extract with the values of the adapter's tensors taken
// from values, by initializer name, where values has them (a trainer's
// current parameters), and from the model elsewhere. Each value is
// rounded to the element type of its initializer, so the adapter is the
// one that Extract returns once the values are written into the model;
// values is not kept.
func ExtractValues(m *graph.Model, values map[string][]float32) (*adapter.Adapter, error) {
	r, err := readAdapted(m)
	if err != nil {
		return nil, err
	}
	read := tensorReader(m, values)
	if r.prefix != nil {
		return extractPrefix(m, r.prefix, read)
	}
	return extractLoRA(m, *r.lora, read)
}

// Summarize counts the parameters of an adapted model, as
// print_trainable_parameters does, from what its metadata records: for
// LoRA the factors and the base tensors that train along, for a prefix
// its parameters (see SummarizePrefix). A model with neither is an error
// that wraps ErrNoAdapter.
func Summarize(m *graph.Model) (Summary, error) {
	r, err := readAdapted(m)
	if err != nil {
		return Summary{}, err
	}
	if r.prefix != nil {
		return summarizePrefix(m, r.prefix), nil
	}
	return summarize(m, *r.lora)
}

// Adapted says what Apply added to a model.
type Adapted struct {
	// Sites are the LoRA sites, nil for a prefix adapter; Prefix is the
	// prefix, nil for a LoRA adapter.
	Sites  []Site
	Prefix *PrefixSite
	// Summary counts parameters as print_trainable_parameters does.
	Summary Summary
}

// Apply injects a saved adapter into base (from_pretrained), LoRA
// (ApplyLoRA) or prefix (ApplyPrefix) as ad's config says. A model
// carries LoRA or a prefix, not both, as a HuggingFace PeftModel does, and
// one prefix at most: an adapter that base cannot take on that count is
// an error, as are options of the other PEFT type (AsInputs for a prefix,
// PrefixReplacePast and PrefixHeadDim for LoRA). Nothing changes when
// Apply fails.
func Apply(base *graph.Model, ad *adapter.Adapter, opts ...Option) (*Adapted, error) {
	if ad == nil || ad.Config() == nil {
		return nil, errorf("no adapter to apply")
	}
	has, err := readAdapted(base)
	if err != nil && !errors.Is(err, ErrNoAdapter) {
		return nil, err
	}
	label := modelLabel(base)
	switch {
	case ad.Prefix != nil && has.prefix != nil:
		return nil, errorf("%s already carries a prefix, so a prefix adapter cannot be added: give its base model", label)
	case ad.Prefix != nil && has.lora != nil:
		return nil, errorf("%s carries LoRA branches, so a prefix adapter cannot be added: a model carries LoRA or a prefix, not both; give its base model", label)
	case ad.LoRA != nil && has.prefix != nil:
		return nil, errorf("%s carries a prefix (prefix tuning), so a LoRA adapter cannot be added: a model carries LoRA or a prefix, not both; give its base model", label)
	}
	if ad.Prefix != nil {
		site, sum, err := ApplyPrefix(base, ad, opts...)
		if err != nil {
			return nil, err
		}
		return &Adapted{Prefix: site, Summary: sum}, nil
	}
	sites, sum, err := ApplyLoRA(base, ad, opts...)
	if err != nil {
		return nil, err
	}
	return &Adapted{Sites: sites, Summary: sum}, nil
}
