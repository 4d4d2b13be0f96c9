package adapter

import (
	"fmt"
	"slices"
	"sort"
)

// Adapter is a PEFT adapter as data: its config and its named weights, all
// in graph layout. Exactly one of LoRA and Prefix is set.
//
// For LoRA, Weights maps a module name such as
// "model.layers.0.self_attn.q_proj" to its A [in, r] and B [r, out], so
// that the branch computes x·A·B·scaling. For prefix tuning, Prompt is the
// prompt_embeddings table [P, layers·2·kv_heads·head_dim], or with a
// projection the encoder's input [P, hidden] and Projection its weights.
// Extra holds further trainable tensors by dotted name, verbatim: biases
// ("<module>.bias") and the weights of trainable modules.
type Adapter struct {
	LoRA   *LoRAConfig
	Prefix *PrefixConfig

	Weights    map[string]LoRAWeights
	Prompt     *Tensor
	Projection *PrefixProjection
	Extra      map[string]*Tensor
}

// LoRAWeights are the two low-rank factors of one module, in graph layout:
// A [in, r] and B [r, out] for a linear layer and an embedding (in is the
// vocabulary), A [r, in, k…] and B [out, r, 1…] for a convolution, ONNX's
// Conv weight layout, which is also HF PEFT's.
type LoRAWeights struct {
	A *Tensor
	B *Tensor
	// Embedding marks an embedding's factors, which HF PEFT names
	// lora_embedding_A and lora_embedding_B.
	Embedding bool
	// Magnitude is DoRA's magnitude vector m [out] (use_dora), one value
	// per output feature ([dim] for an embedding), shaped [1, out, 1…] for
	// a convolution as HF PEFT keeps it; nil for plain LoRA.
	Magnitude *Tensor
}

// Conv reports whether w are a convolution's factors (A of rank 3 or more).
func (w LoRAWeights) Conv() bool { return len(w.A.Shape) >= 3 }

// Rank returns the rank dimension of A: its first for a convolution, its
// last otherwise (r times the enabled parts of a fused projection).
func (w LoRAWeights) Rank() int64 {
	if w.Conv() {
		return w.A.Shape[0]
	}
	return w.A.Shape[len(w.A.Shape)-1]
}

// PrefixProjection is the prefix encoder's MLP, in graph layout:
// table = tanh(Prompt·W1 + B1)·W2 + B2.
type PrefixProjection struct {
	W1 *Tensor // [hidden, projection_hidden]
	B1 *Tensor // [projection_hidden]
	W2 *Tensor // [projection_hidden, table width]
	B2 *Tensor // [table width]
}

// NewLoRA returns an empty LoRA adapter with a copy of cfg.
func NewLoRA(cfg LoRAConfig) *Adapter {
	return &Adapter{LoRA: &cfg, Weights: map[string]LoRAWeights{}, Extra: map[string]*Tensor{}}
}

// NewPrefix returns an empty prefix adapter with a copy of cfg.
func NewPrefix(cfg PrefixConfig) *Adapter {
	return &Adapter{Prefix: &cfg, Extra: map[string]*Tensor{}}
}

// Config returns the adapter's config, LoRA or prefix, or nil.
func (a *Adapter) Config() Config {
	switch {
	case a.LoRA != nil:
		return a.LoRA
	case a.Prefix != nil:
		return a.Prefix
	}
	return nil
}

// Modules returns the names of the LoRA modules, sorted.
func (a *Adapter) Modules() []string {
	return sortedKeys(a.Weights)
}

// NumParams returns the number of trainable values the adapter holds.
func (a *Adapter) NumParams() int64 {
	var n int64
	for _, w := range a.Weights {
		n += w.A.NumElements() + w.B.NumElements()
	}
	if a.Prompt != nil {
		n += a.Prompt.NumElements()
	}
	if p := a.Projection; p != nil {
		for _, t := range []*Tensor{p.W1, p.B1, p.W2, p.B2} {
			n += t.NumElements()
		}
	}
	for _, t := range a.Extra {
		n += t.NumElements()
	}
	return n
}

// Validate checks the config and that every tensor fits it: A is [in, r]
// and B is [r, out] with r from the config (RankFor, times the enabled
// parts of a fused projection), and the prompt table is [P, width].
// Errors name the module or tensor at fault.
func (a *Adapter) Validate() error {
	switch {
	case a.LoRA == nil && a.Prefix == nil:
		return errorf("adapter has no config: set LoRA or Prefix")
	case a.LoRA != nil && a.Prefix != nil:
		return errorf("adapter has both a LoRA and a prefix config")
	case a.LoRA != nil:
		if err := a.LoRA.Validate(); err != nil {
			return err
		}
		if a.Prompt != nil || a.Projection != nil {
			return errorf("a LoRA adapter holds no prompt embeddings")
		}
		for _, m := range a.Modules() {
			if err := a.LoRA.checkWeights(m, a.Weights[m]); err != nil {
				return err
			}
		}
	default:
		if err := a.Prefix.Validate(); err != nil {
			return err
		}
		if len(a.Weights) != 0 {
			return errorf("a prefix adapter holds no LoRA weights")
		}
		if err := a.Prefix.checkWeights(a.Prompt, a.Projection); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(a.Extra) {
		if err := a.Extra[name].check(); err != nil {
			return formatErrorf("", name, "%w", err)
		}
	}
	return nil
}

// checkWeights checks one module's A and B against the config.
func (c *LoRAConfig) checkWeights(module string, w LoRAWeights) error {
	if err := w.A.check(); err != nil {
		return formatErrorf("", module, "lora_A: %w", err)
	}
	if err := w.B.check(); err != nil {
		return formatErrorf("", module, "lora_B: %w", err)
	}
	r := int64(c.RankFor(module))
	if w.Conv() {
		if err := checkConvWeights(module, w, r); err != nil {
			return err
		}
		return c.checkMagnitude(module, w)
	}
	if len(w.A.Shape) != 2 || len(w.B.Shape) != 2 {
		return formatErrorf("", module, "lora_A %v and lora_B %v must both be 2-D, or a convolution's [r, in, k…] and [out, r, 1…]", w.A.Shape, w.B.Shape)
	}
	parts := int64(1)
	if enable := c.EnableFor(module); enable != nil {
		parts = 0
		for _, on := range enable {
			if on {
				parts++
			}
		}
	}
	if w.A.Shape[1] != r*parts {
		if parts != 1 {
			return formatErrorf("", module, "lora_A is %v, want [in, %d] (r %d times %d enabled parts)", w.A.Shape, r*parts, r, parts)
		}
		return formatErrorf("", module, "lora_A is %v, want [in, r] with r %d", w.A.Shape, r)
	}
	if w.B.Shape[0] != r {
		return formatErrorf("", module, "lora_B is %v, want [r, out] with r %d", w.B.Shape, r)
	}
	return c.checkMagnitude(module, w)
}

// checkMagnitude checks a module's DoRA magnitude against the config: one
// value per output feature with use_dora, none without. The output
// features of a fused projection are all its parts' (B holds the enabled
// parts only), so only a plain linear layer's count is checked here.
func (c *LoRAConfig) checkMagnitude(module string, w LoRAWeights) error {
	switch {
	case !c.UseDoRA && w.Magnitude != nil:
		return formatErrorf("", module, "lora_magnitude_vector: a DoRA magnitude, but the config has no use_dora")
	case c.UseDoRA && w.Magnitude == nil:
		return formatErrorf("", module, "use_dora is set but the module has no lora_magnitude_vector")
	case w.Magnitude == nil:
		return nil
	}
	if err := w.Magnitude.check(); err != nil {
		return formatErrorf("", module, "lora_magnitude_vector: %w", err)
	}
	if w.Conv() {
		want := append([]int64{1, w.B.Shape[0]}, slices.Repeat([]int64{1}, len(w.A.Shape)-2)...)
		if !slices.Equal(w.Magnitude.Shape, want) {
			return formatErrorf("", module, "lora_magnitude_vector is %v, want %v ([1, out, 1…], HF PEFT's shape for a convolution)", w.Magnitude.Shape, want)
		}
		return nil
	}
	if len(w.Magnitude.Shape) != 1 {
		return formatErrorf("", module, "lora_magnitude_vector is %v, want [out]", w.Magnitude.Shape)
	}
	if c.EnableFor(module) == nil && w.Magnitude.Shape[0] != w.B.Shape[1] {
		return formatErrorf("", module, "lora_magnitude_vector is %v, want [%d] (lora_B's out)", w.Magnitude.Shape, w.B.Shape[1])
	}
	return nil
}

// checkConvWeights checks a convolution's factors A [r, in, k…] and B
// [out, r, 1…] for rank r.
func checkConvWeights(module string, w LoRAWeights, r int64) error {
	switch {
	case w.Embedding:
		return formatErrorf("", module, "lora_embedding_A %v: an embedding's factors are 2-D", w.A.Shape)
	case len(w.B.Shape) != len(w.A.Shape) || len(w.A.Shape) > 5:
		return formatErrorf("", module, "lora_A %v and lora_B %v: a convolution's are [r, in, k…] and [out, r, 1…] of the same rank, 3 to 5", w.A.Shape, w.B.Shape)
	case w.A.Shape[0] != r:
		return formatErrorf("", module, "lora_A is %v, want [r, in, k…] with r %d", w.A.Shape, r)
	case w.B.Shape[1] != r:
		return formatErrorf("", module, "lora_B is %v, want [out, r, 1…] with r %d", w.B.Shape, r)
	}
	for _, d := range w.B.Shape[2:] {
		if d != 1 {
			return formatErrorf("", module, "lora_B is %v, want a 1×1 kernel [out, r, 1…]", w.B.Shape)
		}
	}
	return nil
}

// checkWeights checks the prompt table and the projection against the config.
func (c *PrefixConfig) checkWeights(prompt *Tensor, proj *PrefixProjection) error {
	if prompt == nil {
		return formatErrorf("", "prompt_embeddings", "missing")
	}
	if err := prompt.check(); err != nil {
		return formatErrorf("", "prompt_embeddings", "%w", err)
	}
	want := []int64{int64(c.NumPrefixTokens), int64(c.EmbeddingWidth())}
	if !equalShape(prompt.Shape, want) {
		what := "num_prefix_tokens, layers·2·kv_heads·head_dim"
		if c.PrefixProjection {
			what = "num_prefix_tokens, hidden_size"
		}
		return formatErrorf("", "prompt_embeddings", "shape %v, want %v [%s]", prompt.Shape, want, what)
	}
	if !c.PrefixProjection {
		if proj != nil {
			return formatErrorf("", "prefix_encoder", "projection weights given but prefix_projection is false")
		}
		return nil
	}
	if proj == nil {
		return formatErrorf("", "prefix_encoder", "prefix_projection is true but the projection weights are missing")
	}
	h, ph, tw := int64(c.HiddenSize), int64(c.PrefixProjectionHiddenSize), int64(c.TableWidth())
	for _, p := range []struct {
		name string
		t    *Tensor
		want []int64
	}{
		{"W1", proj.W1, []int64{h, ph}},
		{"B1", proj.B1, []int64{ph}},
		{"W2", proj.W2, []int64{ph, tw}},
		{"B2", proj.B2, []int64{tw}},
	} {
		if err := p.t.check(); err != nil {
			return formatErrorf("", "prefix_encoder", "%s: %w", p.name, err)
		}
		if !equalShape(p.t.Shape, p.want) {
			return formatErrorf("", "prefix_encoder", "%s has shape %v, want %v", p.name, p.t.Shape, p.want)
		}
	}
	return nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// String summarises the adapter, e.g. "LoRA r=8 alpha=16: 4 modules, 32768 params".
func (a *Adapter) String() string {
	switch {
	case a.LoRA != nil:
		unit := "modules"
		if len(a.Weights) == 1 {
			unit = "module"
		}
		return fmt.Sprintf("LoRA r=%d alpha=%g: %d %s, %d params", a.LoRA.R, a.LoRA.Alpha, len(a.Weights), unit, a.NumParams())
	case a.Prefix != nil:
		return fmt.Sprintf("prefix P=%d layers=%d kv_heads=%d head_dim=%d: %d params",
			a.Prefix.NumPrefixTokens, a.Prefix.NumHiddenLayers, a.Prefix.KVHeads(), a.Prefix.HeadDim(), a.NumParams())
	}
	return "empty adapter"
}
