package adapter

import (
	"bytes"
	"encoding/json"
	"math"
	"regexp"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
)

// This file maps configs to and from JSON: HuggingFace PEFT's
// adapter_config.json, whose fields PEFT cannot express go in a nested
// "peftonnx" object, and PaddleNLP's lora_config.json and
// prefix_config.json, which paddle_config.go writes.

// The nested object of adapter_config.json that holds what PEFT lacks.
const extraKey = "peftonnx"

// hfTargetModules renders full-match regexes for PEFT's target_modules:
// a list of names when every regex came from a name (see nameToRegexp),
// else one regex string, which PEFT full-matches too.
func hfTargetModules(patterns []string) any {
	if names, ok := regexpsToNames(patterns); ok {
		return names
	}
	if len(patterns) == 1 {
		return patterns[0]
	}
	parts := make([]string, len(patterns))
	for i, p := range patterns {
		parts[i] = "(?:" + p + ")"
	}
	return strings.Join(parts, "|")
}

// hfModulePatterns reads PEFT's target_modules or exclude_modules as
// full-match regexes: a string is a regex (or "all-linear"), a list holds
// names that match by suffix (see ModuleTargets).
func hfModulePatterns(f *jsonFields, key string) ([]string, error) {
	names, isString, err := f.stringsField(key)
	if err != nil {
		return nil, err
	}
	if isString {
		if strings.EqualFold(names[0], AllLinear) { // PEFT lowers it
			return []string{AllLinear}, nil
		}
		return names, nil
	}
	if len(names) == 0 {
		return nil, nil
	}
	return ModuleTargets(names...), nil
}

// regexpsToNames inverts nameToRegexp for every pattern, if it can.
func regexpsToNames(patterns []string) ([]string, bool) {
	if len(patterns) == 0 {
		return nil, false
	}
	names := make([]string, len(patterns))
	for i, p := range patterns {
		name, ok := strings.CutPrefix(p, `(?:.*\.)?`)
		if !ok || regexp.QuoteMeta(unquoteMeta(name)) != name {
			return nil, false
		}
		names[i] = unquoteMeta(name)
	}
	return names, true
}

// unquoteMeta removes the backslashes regexp.QuoteMeta adds.
func unquoteMeta(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hfBias(b Bias) string {
	switch b {
	case BiasLoRA:
		return "lora_only"
	case BiasAll:
		return "all"
	}
	return "none"
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// loraConfigJSON returns the adapter_config.json of a LoRA adapter.
// modulesToSave are the module names that trainable tensors belong to.
func loraConfigJSON(c *LoRAConfig, modulesToSave []string, weightsHash string) ([]byte, error) {
	init := any(true)
	if c.InitLoRAWeights == InitGaussian {
		init = "gaussian"
	}
	var layers, pattern any
	if c.LayersToTransform != nil {
		layers = c.LayersToTransform
	}
	switch len(c.LayersPattern) {
	case 0:
	case 1:
		pattern = c.LayersPattern[0]
	default:
		pattern = c.LayersPattern
	}
	var mts any
	if len(modulesToSave) > 0 {
		mts = modulesToSave
	}
	rank, alpha := c.RankPattern, c.AlphaPattern
	if rank == nil {
		rank = map[string]int{}
	}
	if alpha == nil {
		alpha = map[string]float64{}
	}
	extra := map[string]any{
		"target_modules":         c.TargetModules,
		"trainable_modules":      nonNil(c.TrainableModules),
		"trainable_bias":         string(orDefault(c.TrainableBias, BiasNone)),
		"enable_lora_list":       c.EnableLoRAList,
		"head_dim":               c.HeadDim,
		"dtype":                  storedAs(c.DType),
		"tensor_parallel_degree": c.TensorParallelDegree,
		"init_lora_weights":      string(orDefault(c.InitLoRAWeights, InitKaiming)),
		"merge_weights":          c.MergeWeights,
		"do_qat":                 c.DoQAT,
		"lora_plus_scale":        c.LoRAPlusScale,
		"use_quick_lora":         c.UseQuickLoRA,
	}
	m := map[string]any{
		"peft_type":               "LORA",
		"task_type":               nullIfEmpty(c.TaskType),
		"base_model_name_or_path": nullIfEmpty(c.BaseModelName),
		"revision":                nullIfEmpty(c.Revision),
		"inference_mode":          c.InferenceMode,
		"r":                       c.R,
		"lora_alpha":              c.Alpha,
		"lora_dropout":            c.Dropout,
		"target_modules":          hfTargetModules(c.TargetModules),
		"bias":                    hfBias(c.TrainableBias),
		"use_rslora":              c.UseRSLoRA,
		"use_dora":                c.UseDoRA,
		"fan_in_fan_out":          c.FanInFanOut,
		"init_lora_weights":       init,
		"modules_to_save":         mts,
		"layers_to_transform":     layers,
		"layers_pattern":          pattern,
		"rank_pattern":            rank,
		"alpha_pattern":           alpha,
		"auto_mapping":            nil,
		"layer_replication":       nil,
		"loftq_config":            map[string]any{},
		"megatron_config":         nil,
		"megatron_core":           "megatron.core",
		extraKey:                  extra,
	}
	if len(c.ExcludeModules) > 0 { // left out when empty, as PEFT before 0.14 writes it
		m["exclude_modules"] = hfTargetModules(c.ExcludeModules)
		extra["exclude_modules"] = c.ExcludeModules
	}
	return marshalConfig(m, weightsHash)
}

// prefixConfigJSON returns the adapter_config.json of a prefix adapter.
// PEFT's token_dim and num_attention_heads are given in key/value heads,
// as PEFT itself sets them for grouped-query models, so that PEFT reshapes
// prompt_embeddings the same way.
func prefixConfigJSON(c *PrefixConfig, weightsHash string) ([]byte, error) {
	var enc any
	if c.PrefixProjection {
		enc = c.PrefixProjectionHiddenSize
	}
	extra := map[string]any{
		"num_prefix_tokens":             c.NumPrefixTokens,
		"num_attention_heads":           c.NumAttentionHeads,
		"multi_query_group_num":         c.KVHeads(),
		"num_hidden_layers":             c.NumHiddenLayers,
		"hidden_size":                   c.HiddenSize,
		"prefix_projection":             c.PrefixProjection,
		"prefix_projection_hidden_size": c.PrefixProjectionHiddenSize,
		"prefix_dropout":                c.PrefixDropout,
		"dtype":                         storedAs(c.DType),
		"tensor_parallel_degree":        c.TensorParallelDegree,
	}
	m := map[string]any{
		"peft_type":                  "PREFIX_TUNING",
		"task_type":                  nullIfEmpty(c.TaskType),
		"base_model_name_or_path":    nullIfEmpty(c.BaseModelName),
		"revision":                   nullIfEmpty(c.Revision),
		"inference_mode":             c.InferenceMode,
		"num_virtual_tokens":         c.NumPrefixTokens,
		"token_dim":                  c.KVHeads() * c.HeadDim(),
		"num_attention_heads":        c.KVHeads(),
		"num_layers":                 c.NumHiddenLayers,
		"num_transformer_submodules": 1,
		"encoder_hidden_size":        enc,
		"prefix_projection":          c.PrefixProjection,
		"modules_to_save":            nil,
		"auto_mapping":               nil,
		extraKey:                     extra,
	}
	return marshalConfig(m, weightsHash)
}

// marshalConfig writes m with sorted keys and two-space indent, as PEFT
// does, with weightsHash, where given, in its "peftonnx" object
// m[extraKey].
func marshalConfig(m map[string]any, weightsHash string) ([]byte, error) {
	if weightsHash != "" {
		m[extraKey].(map[string]any)[weightsHashKey] = weightsHash
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, errorf("adapter_config.json: %w", err)
	}
	return buf.Bytes(), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// jsonFields reads a JSON object and its fields with types checked; each
// error names the file and the key.
type jsonFields struct {
	file string
	m    map[string]json.RawMessage
}

func parseJSONFields(file string, data []byte) (*jsonFields, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, formatErrorf(file, "", "not a JSON object: %w", err)
	}
	if m == nil {
		return nil, formatErrorf(file, "", "not a JSON object")
	}
	return &jsonFields{file: file, m: m}, nil
}

// raw returns the field, or nil when it is absent or null.
func (f *jsonFields) raw(key string) json.RawMessage {
	r, ok := f.m[key]
	if !ok || string(bytes.TrimSpace(r)) == "null" {
		return nil
	}
	return r
}

func (f *jsonFields) has(key string) bool { return f.raw(key) != nil }

func (f *jsonFields) errorf(key, format string, args ...any) error {
	return formatErrorf(f.file, key, format, args...)
}

func (f *jsonFields) decode(key string, v any, want string) error {
	r := f.raw(key)
	if r == nil {
		return nil
	}
	if err := json.Unmarshal(r, v); err != nil {
		return f.errorf(key, "want %s, got %s", want, r)
	}
	return nil
}

// intField sets *dst from an integer field (1 and 1.0 both count).
func (f *jsonFields) intField(key string, dst *int) error {
	var v float64
	if err := f.decode(key, &v, "an integer"); err != nil || !f.has(key) {
		return err
	}
	if v != math.Trunc(v) || math.Abs(v) > 1<<31 {
		return f.errorf(key, "want an integer, got %s", f.raw(key))
	}
	*dst = int(v)
	return nil
}

func (f *jsonFields) floatField(key string, dst *float64) error {
	return f.decode(key, dst, "a number")
}

func (f *jsonFields) boolField(key string, dst *bool) error {
	return f.decode(key, dst, "true or false")
}

func (f *jsonFields) stringField(key string, dst *string) error {
	return f.decode(key, dst, "a string")
}

// stringsField reads a string or a list of strings.
func (f *jsonFields) stringsField(key string) ([]string, bool, error) {
	r := f.raw(key)
	if r == nil {
		return nil, false, nil
	}
	var s string
	if json.Unmarshal(r, &s) == nil {
		return []string{s}, true, nil
	}
	var l []string
	if err := json.Unmarshal(r, &l); err != nil {
		return nil, false, f.errorf(key, "want a string or a list of strings, got %s", r)
	}
	return l, false, nil
}

func (f *jsonFields) dtypeField(key string, dst *dtype.Type) error {
	var s string
	if err := f.stringField(key, &s); err != nil || s == "" {
		return err
	}
	d, err := dtype.Parse(s)
	if err != nil || !storable(d) {
		return f.errorf(key, "unknown dtype %q", s)
	}
	*dst = d
	return nil
}

func (f *jsonFields) sub(key string) (*jsonFields, error) {
	r := f.raw(key)
	if r == nil {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r, &m); err != nil {
		return nil, f.errorf(key, "want an object, got %s", r)
	}
	return &jsonFields{file: f.file, m: m}, nil
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// parseHFLoRAConfig reads a PEFT LoRA adapter_config.json, then the
// "peftonnx" object, whose fields take precedence.
func parseHFLoRAConfig(f *jsonFields) (*LoRAConfig, error) {
	c := DefaultLoRAConfig()
	c.TaskType = ""
	var bias string
	err := firstErr(
		f.intField("r", &c.R),
		f.floatField("lora_alpha", &c.Alpha),
		f.floatField("lora_dropout", &c.Dropout),
		f.boolField("use_rslora", &c.UseRSLoRA),
		f.boolField("use_dora", &c.UseDoRA),
		f.boolField("fan_in_fan_out", &c.FanInFanOut),
		f.boolField("inference_mode", &c.InferenceMode),
		f.stringField("task_type", &c.TaskType),
		f.stringField("base_model_name_or_path", &c.BaseModelName),
		f.stringField("revision", &c.Revision),
		f.stringField("bias", &bias),
		f.decode("rank_pattern", &c.RankPattern, "an object of integers"),
		f.decode("alpha_pattern", &c.AlphaPattern, "an object of numbers"),
	)
	if err != nil {
		return nil, err
	}
	switch bias {
	case "", "none":
		c.TrainableBias = BiasNone
	case "lora_only":
		c.TrainableBias = BiasLoRA
	case "all":
		c.TrainableBias = BiasAll
	default:
		return nil, f.errorf("bias", "want none, lora_only or all, got %q", bias)
	}
	var init string
	if json.Unmarshal(f.raw("init_lora_weights"), &init) == nil && init == "gaussian" {
		c.InitLoRAWeights = InitGaussian
	} // true, false, "pissa", "loftq", …: only the saved weights count here
	if c.TargetModules, err = hfModulePatterns(f, "target_modules"); err != nil {
		return nil, err
	}
	if c.ExcludeModules, err = hfModulePatterns(f, "exclude_modules"); err != nil {
		return nil, err
	}
	save, _, err := f.stringsField("modules_to_save")
	if err != nil {
		return nil, err
	}
	for _, s := range save {
		c.TrainableModules = append(c.TrainableModules, nameToRegexp(s))
	}
	if err := f.decode("layers_to_transform", &c.LayersToTransform, "an integer or a list of integers"); err != nil {
		var one int
		if f.intField("layers_to_transform", &one) != nil {
			return nil, err
		}
		c.LayersToTransform = []int{one}
	}
	if c.LayersPattern, _, err = f.stringsField("layers_pattern"); err != nil {
		return nil, err
	}
	var loraBias bool
	if err := f.boolField("lora_bias", &loraBias); err != nil {
		return nil, err
	}
	if loraBias {
		return nil, f.errorf("lora_bias", "a bias on lora_B is not supported")
	}
	if r := f.raw("layer_replication"); r != nil && string(bytes.TrimSpace(r)) != "[]" {
		return nil, f.errorf("layer_replication", "layer replication is not supported")
	}
	x, err := f.sub(extraKey)
	if err != nil {
		return nil, err
	}
	if x == nil {
		c.normalize()
		return &c, nil
	}
	init = ""
	err = firstErr(
		x.decode("target_modules", &c.TargetModules, "a list of regexes"),
		x.decode("exclude_modules", &c.ExcludeModules, "a list of regexes"),
		paddleLoRAFields(x, &c),
		x.stringField("init_lora_weights", &init),
	)
	if err != nil {
		return nil, err
	}
	c.InitLoRAWeights = orDefault(LoRAInit(init), c.InitLoRAWeights)
	c.normalize()
	return &c, nil
}

// parsePaddleLoRAConfig reads PaddleNLP's lora_config.json.
func parsePaddleLoRAConfig(f *jsonFields) (*LoRAConfig, error) {
	c := DefaultLoRAConfig()
	c.TaskType = ""
	err := firstErr(
		f.intField("r", &c.R),
		f.floatField("lora_alpha", &c.Alpha),
		f.floatField("lora_dropout", &c.Dropout),
		paddleLoRAFields(f, &c),
		f.boolField("rslora", &c.UseRSLoRA),
		f.stringField("base_model_name_or_path", &c.BaseModelName),
	)
	if err != nil {
		return nil, err
	}
	targets, _, err := f.stringsField("target_modules")
	if err != nil {
		return nil, err
	}
	c.TargetModules = targets
	if err := paddleLoRAExtraFields(f, &c); err != nil {
		return nil, err
	}
	c.normalize()
	for _, key := range []string{"pissa", "lora_use_mixer", "use_mora", "lorapro", "mos_lora"} {
		var on bool
		if f.boolField(key, &on) == nil && on {
			return nil, f.errorf(key, "this LoRA variant is not supported")
		}
	}
	return &c, nil
}

// paddleLoRAFields reads the LoRA fields that PaddleNLP's lora_config.json
// and the "peftonnx" object of adapter_config.json both hold, under
// PaddleNLP's names, into c; an absent trainable_bias leaves c's.
func paddleLoRAFields(f *jsonFields, c *LoRAConfig) error {
	var bias string
	err := firstErr(
		f.decode("trainable_modules", &c.TrainableModules, "a list of regexes"),
		f.boolField("merge_weights", &c.MergeWeights),
		f.stringField("trainable_bias", &bias),
		f.decode("enable_lora_list", &c.EnableLoRAList, "a list"),
		f.intField("tensor_parallel_degree", &c.TensorParallelDegree),
		f.dtypeField("dtype", &c.DType),
		f.intField("head_dim", &c.HeadDim),
		f.boolField("do_qat", &c.DoQAT),
		f.floatField("lora_plus_scale", &c.LoRAPlusScale),
		f.boolField("use_quick_lora", &c.UseQuickLoRA),
	)
	c.TrainableBias = orDefault(Bias(bias), c.TrainableBias)
	return err
}

// parsePrefixConfig reads a PEFT PREFIX_TUNING adapter_config.json (hf
// true) or PaddleNLP's prefix_config.json; in the former the "peftonnx"
// object, which uses PaddleNLP's names, takes precedence.
func parsePrefixConfig(f *jsonFields, hf bool) (*PrefixConfig, error) {
	c := &PrefixConfig{TensorParallelDegree: -1}
	paddle := f
	if hf {
		var tokenDim, heads, sub int
		err := firstErr(
			f.intField("num_virtual_tokens", &c.NumPrefixTokens),
			f.intField("token_dim", &tokenDim),
			f.intField("num_attention_heads", &heads),
			f.intField("num_layers", &c.NumHiddenLayers),
			f.intField("encoder_hidden_size", &c.PrefixProjectionHiddenSize),
			f.boolField("prefix_projection", &c.PrefixProjection),
			f.intField("num_transformer_submodules", &sub),
			f.stringField("task_type", &c.TaskType),
			f.stringField("base_model_name_or_path", &c.BaseModelName),
			f.stringField("revision", &c.Revision),
			f.boolField("inference_mode", &c.InferenceMode),
		)
		if err != nil {
			return nil, err
		}
		if sub > 1 {
			return nil, f.errorf("num_transformer_submodules", "%d transformer submodules (encoder-decoder) are not supported", sub)
		}
		c.HiddenSize, c.NumAttentionHeads = tokenDim, heads
		x, err := f.sub(extraKey)
		if err != nil {
			return nil, err
		}
		if x == nil {
			return c, nil
		}
		paddle = x
	}
	err := firstErr(
		paddle.floatField("prefix_dropout", &c.PrefixDropout),
		paddle.intField("num_prefix_tokens", &c.NumPrefixTokens),
		paddle.intField("num_attention_heads", &c.NumAttentionHeads),
		paddle.intField("multi_query_group_num", &c.MultiQueryGroupNum),
		paddle.intField("num_hidden_layers", &c.NumHiddenLayers),
		paddle.intField("hidden_size", &c.HiddenSize),
		paddle.boolField("prefix_projection", &c.PrefixProjection),
		paddle.intField("prefix_projection_hidden_size", &c.PrefixProjectionHiddenSize),
		paddle.intField("tensor_parallel_degree", &c.TensorParallelDegree),
		paddle.dtypeField("dtype", &c.DType),
	)
	if err != nil {
		return nil, err
	}
	if !hf {
		if err := paddlePrefixExtraFields(f, c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// modulesToSave returns PEFT's modules_to_save for a LoRA adapter: nil
// without TrainableModules; the names they came from when they were read
// from PEFT; else, sorted, the modules that the extra tensors belong to (a
// tensor "a.b.weight" belongs to "a.b"), leaving out biases.
func modulesToSave(a *Adapter) []string {
	if len(a.LoRA.TrainableModules) == 0 {
		return nil
	}
	if names, ok := regexpsToNames(a.LoRA.TrainableModules); ok {
		return names
	}
	set := map[string]bool{}
	for name := range a.Extra {
		i := strings.LastIndexByte(name, '.')
		if i <= 0 {
			continue
		}
		if name[i+1:] != "bias" {
			set[name[:i]] = true
		}
	}
	return sortedKeys(set)
}

// normalize turns empty lists and maps read from JSON into nil, which means
// the same, so that a config read back equals the one written.
func (c *LoRAConfig) normalize() {
	c.TrainableModules = emptyAsNil(c.TrainableModules)
	c.ExcludeModules = emptyAsNil(c.ExcludeModules)
	c.LayersToTransform = emptyAsNil(c.LayersToTransform)
	c.LayersPattern = emptyAsNil(c.LayersPattern)
	if len(c.RankPattern) == 0 {
		c.RankPattern = nil
	}
	if len(c.AlphaPattern) == 0 {
		c.AlphaPattern = nil
	}
}

// emptyAsNil returns nil for an empty s.
func emptyAsNil[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}
