package adapter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
)

// Bias says which biases train along with a LoRA adapter (PaddleNLP's
// trainable_bias, HuggingFace PEFT's bias).
type Bias string

// The values of Bias. The empty string means BiasNone.
const (
	BiasNone Bias = "none" // no bias trains
	BiasLoRA Bias = "lora" // the biases of the adapted layers train (PEFT: "lora_only")
	BiasAll  Bias = "all"  // every bias trains
)

// LoRAInit says how LoRA A is initialised; B always starts at zero.
type LoRAInit string

// The values of LoRAInit. The empty string means InitKaiming.
const (
	InitKaiming  LoRAInit = "kaiming"  // Kaiming-uniform with a=√5, like torch.nn.Linear (PEFT: init_lora_weights=true)
	InitGaussian LoRAInit = "gaussian" // normal with std 1/r (PEFT: init_lora_weights="gaussian")
	// PiSSA and OLoRA start A and B from the base weight and leave the
	// residual W − s·A·B in the base (package rewrite): the principal
	// singular vectors ("pissa"; "pissa_niter_N" is accepted and computed
	// exactly), or the first r columns of a QR decomposition ("olora").
	InitPiSSA LoRAInit = "pissa"
	InitOLoRA LoRAInit = "olora"
	// LoftQ alternates quantizing the base and a rank-r SVD of what the
	// quantization lost, and leaves the quantized weight in the base
	// (package rewrite, init_loftq.go).
	InitLoftQ LoRAInit = "loftq"
)

// FromWeights reports whether i starts A and B from the base weight,
// rewriting it (PiSSA, OLoRA, LoftQ).
func (i LoRAInit) FromWeights() bool {
	return i == InitPiSSA || i == InitOLoRA || i == InitLoftQ || isPiSSANiter(i)
}

// isPiSSANiter reports whether i is "pissa_niter_N" with N a positive
// integer.
func isPiSSANiter(i LoRAInit) bool {
	n, ok := strings.CutPrefix(string(i), "pissa_niter_")
	v, err := strconv.Atoi(n)
	return ok && err == nil && v > 0
}

// LoRAConfig configures a LoRA adapter. It carries every field of
// PaddleNLP's LoRAConfig and the HuggingFace PEFT LoraConfig fields that
// matter outside PyTorch. Use DefaultLoRAConfig for the defaults; the zero
// value is not valid (R is 0). In JSON its keys are snake_case, as
// PaddleNLP and PEFT spell the fields; the Go field names that earlier
// versions wrote are read too (config_json.go).
type LoRAConfig struct {
	R       int     `json:"r"`            // rank; default 8
	Alpha   float64 `json:"lora_alpha"`   // lora_alpha; default 8
	Dropout float64 `json:"lora_dropout"` // lora_dropout, in [0, 1); active in training only

	// TargetModules are regular expressions (Go syntax) that must match the
	// whole module name, like PaddleNLP's target_modules and re.fullmatch.
	TargetModules []string `json:"target_modules"`
	// ExcludeModules are full-match regexes of modules that stay as they
	// are although a target selects them (HF PEFT's exclude_modules).
	ExcludeModules []string `json:"exclude_modules,omitempty"`
	// TrainableModules are full-match regexes of modules whose own weights
	// train too (PaddleNLP's trainable_modules, PEFT's modules_to_save).
	TrainableModules []string `json:"trainable_modules"`
	TrainableBias    Bias     `json:"trainable_bias"`

	// EnableLoRAList and HeadDim describe LoRA on fused projections such as
	// QKV, as PaddleNLP's LoRAMergedLinear does: A is [in, r·k] and B is
	// [r, out/n·k] for an enable list of n flags with k set.
	EnableLoRAList EnableLoRAList `json:"enable_lora_list"`
	HeadDim        int            `json:"head_dim"`

	DType                dtype.Type `json:"dtype"`                  // dtype the adapter trains in: Float32, Float16 or BFloat16; Undefined means Float32
	TensorParallelDegree int        `json:"tensor_parallel_degree"` // -1, 0 or 1: none
	UseRSLoRA            bool       `json:"use_rslora"`             // scaling alpha/√r instead of alpha/r
	InitLoRAWeights      LoRAInit   `json:"init_lora_weights"`
	BaseModelName        string     `json:"base_model_name_or_path"` // base_model_name_or_path

	MergeWeights  bool    `json:"merge_weights"`   // PaddleNLP merge_weights
	DoQAT         bool    `json:"do_qat"`          // PaddleNLP do_qat (carried, not acted on)
	LoRAPlusScale float64 `json:"lora_plus_scale"` // PaddleNLP lora_plus_scale: LR multiplier of B; 0 means 1
	UseQuickLoRA  bool    `json:"use_quick_lora"`  // PaddleNLP use_quick_lora (carried, not acted on)

	// HuggingFace PEFT fields.
	FanInFanOut       bool               `json:"fan_in_fan_out"`      // the base layer stores [in, out] (GPT-2 Conv1D); file shapes do not change
	TaskType          string             `json:"task_type"`           // e.g. "CAUSAL_LM"
	InferenceMode     bool               `json:"inference_mode"`      // PEFT inference_mode
	Revision          string             `json:"revision"`            // revision of the base model
	RankPattern       map[string]int     `json:"rank_pattern"`        // per-module rank; keys match a trailing run of name segments
	AlphaPattern      map[string]float64 `json:"alpha_pattern"`       // per-module alpha; keys as RankPattern
	LayersToTransform []int              `json:"layers_to_transform"` // layer indices to adapt; nil means all
	LayersPattern     []string           `json:"layers_pattern"`      // name of the layer list, e.g. "layers"
	UseDoRA           bool               `json:"use_dora"`            // DoRA: LoRAWeights.Magnitude rescales the merged weight's columns
}

// DefaultLoRAConfig returns PaddleNLP's defaults: r 8, alpha 8, no dropout,
// no bias, Kaiming init, float32, targets as given.
func DefaultLoRAConfig(targets ...string) LoRAConfig {
	return LoRAConfig{
		R:                    8,
		Alpha:                8,
		TargetModules:        targets,
		TrainableBias:        BiasNone,
		InitLoRAWeights:      InitKaiming,
		DType:                dtype.Float32,
		TensorParallelDegree: -1,
		TaskType:             "CAUSAL_LM",
	}
}

// PEFTType returns "LORA".
func (c *LoRAConfig) PEFTType() string { return "LORA" }

// Scaling returns alpha/r, or alpha/√r with rsLoRA.
func (c *LoRAConfig) Scaling() float64 {
	return scaling(c.Alpha, c.R, c.UseRSLoRA)
}

func scaling(alpha float64, r int, rslora bool) float64 {
	if rslora {
		return alpha / math.Sqrt(float64(r))
	}
	return alpha / float64(r)
}

// RankFor returns the rank of module: its RankPattern entry, else R. Where
// several keys match, the first in sorted order wins.
func (c *LoRAConfig) RankFor(module string) int {
	if k, ok := matchPattern(c.RankPattern, module); ok {
		return c.RankPattern[k]
	}
	return c.R
}

// AlphaFor returns the alpha of module: its AlphaPattern entry, else Alpha.
func (c *LoRAConfig) AlphaFor(module string) float64 {
	if k, ok := matchPattern(c.AlphaPattern, module); ok {
		return c.AlphaPattern[k]
	}
	return c.Alpha
}

// ScalingFor returns the scaling of module, taking RankPattern and
// AlphaPattern into account.
func (c *LoRAConfig) ScalingFor(module string) float64 {
	return scaling(c.AlphaFor(module), c.RankFor(module), c.UseRSLoRA)
}

func matchPattern[V any](m map[string]V, module string) (string, bool) {
	for _, k := range sortedKeys(m) {
		if re, err := compilePatternKey(k); err == nil && re.MatchString(module) {
			return k, true
		}
	}
	return "", false
}

// MatchTarget returns the index of the first TargetModules regex that
// matches the whole of name, or -1.
func (c *LoRAConfig) MatchTarget(name string) int {
	for i, p := range c.TargetModules {
		if re, err := compileFull(p); err == nil && re.MatchString(name) {
			return i
		}
	}
	return -1
}

// EnableFor returns the fused-projection enable flags that apply to module
// (see EnableLoRAList), or nil for plain LoRA.
func (c *LoRAConfig) EnableFor(module string) []bool {
	if c.EnableLoRAList.All != nil {
		return c.EnableLoRAList.All
	}
	i := c.MatchTarget(module)
	if i < 0 || i >= len(c.EnableLoRAList.PerTarget) {
		return nil
	}
	return c.EnableLoRAList.PerTarget[i]
}

// EnabledParts returns the number of enabled parts k of a fused projection
// with the flags enable (EnableFor's), or 1 for nil: plain LoRA, whose A
// is [in, r] where a fused projection's is [in, r·k].
func EnabledParts(enable []bool) int {
	if enable == nil {
		return 1
	}
	k := 0
	for _, on := range enable {
		if on {
			k++
		}
	}
	return k
}

// Validate reports the first field that is out of range, as an error that
// names the config field.
func (c *LoRAConfig) Validate() error { return validated(c) }

func (c *LoRAConfig) kind() string { return "lora" }

func (c *LoRAConfig) validate() error {
	if c.R <= 0 {
		return fmt.Errorf("r must be positive, got %d", c.R)
	}
	if math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0) || c.Alpha <= 0 {
		return fmt.Errorf("lora_alpha must be positive and finite, got %v", c.Alpha)
	}
	if err := checkProbability("lora_dropout", c.Dropout); err != nil {
		return err
	}
	if len(c.TargetModules) == 0 {
		return fmt.Errorf("target_modules is empty: name at least one module regex")
	}
	for _, p := range c.TargetModules {
		if _, err := compileFull(p); err != nil {
			return fmt.Errorf("target_modules: bad regex %q: %w", p, err)
		}
	}
	for _, p := range c.TrainableModules {
		if _, err := compileFull(p); err != nil {
			return fmt.Errorf("trainable_modules: bad regex %q: %w", p, err)
		}
	}
	for _, p := range c.ExcludeModules {
		if _, err := compileFull(p); err != nil {
			return fmt.Errorf("exclude_modules: bad regex %q: %w", p, err)
		}
	}
	switch c.TrainableBias {
	case "", BiasNone, BiasLoRA, BiasAll:
	default:
		return fmt.Errorf("trainable_bias must be none, lora or all, got %q", c.TrainableBias)
	}
	if err := c.EnableLoRAList.check(len(c.TargetModules)); err != nil {
		return err
	}
	if c.HeadDim < 0 {
		return fmt.Errorf("head_dim must not be negative, got %d", c.HeadDim)
	}
	if !c.EnableLoRAList.IsZero() && c.HeadDim == 0 {
		return fmt.Errorf("enable_lora_list needs head_dim")
	}
	if err := checkTrainingDType(c.DType); err != nil {
		return err
	}
	if err := checkTensorParallel(c.TensorParallelDegree); err != nil {
		return err
	}
	switch c.InitLoRAWeights {
	case "", InitKaiming, InitGaussian, InitPiSSA, InitOLoRA, InitLoftQ:
	default:
		if !isPiSSANiter(c.InitLoRAWeights) {
			return fmt.Errorf("init_lora_weights must be kaiming, gaussian, pissa, pissa_niter_N, olora or loftq, got %q", c.InitLoRAWeights)
		}
	}
	if math.IsNaN(c.LoRAPlusScale) || c.LoRAPlusScale < 0 {
		return fmt.Errorf("lora_plus_scale must not be negative, got %v", c.LoRAPlusScale)
	}
	for k, r := range c.RankPattern {
		if _, err := compilePatternKey(k); err != nil {
			return fmt.Errorf("rank_pattern: bad key %q: %w", k, err)
		}
		if r <= 0 {
			return fmt.Errorf("rank_pattern[%q] must be positive, got %d", k, r)
		}
	}
	for k, a := range c.AlphaPattern {
		if _, err := compilePatternKey(k); err != nil {
			return fmt.Errorf("alpha_pattern: bad key %q: %w", k, err)
		}
		if math.IsNaN(a) || math.IsInf(a, 0) || a <= 0 {
			return fmt.Errorf("alpha_pattern[%q] must be positive and finite, got %v", k, a)
		}
	}
	for _, l := range c.LayersToTransform {
		if l < 0 {
			return fmt.Errorf("layers_to_transform has negative index %d", l)
		}
	}
	return nil
}

// EnableLoRAList is PaddleNLP's enable_lora_list for fused projections. In
// JSON it is either a flat list of flags that applies to every target
// ([false, true, true]) or one entry per target module, each a list of
// flags or null for plain LoRA ([[true, false, true], null]).
type EnableLoRAList struct {
	All       []bool   // flat form
	PerTarget [][]bool // nested form: entry i belongs to TargetModules[i]
}

// IsZero reports whether no flags are set.
func (e EnableLoRAList) IsZero() bool { return e.All == nil && e.PerTarget == nil }

func (e EnableLoRAList) check(targets int) error {
	if e.All != nil && e.PerTarget != nil {
		return fmt.Errorf("enable_lora_list: set either the flat or the per-target form, not both")
	}
	if e.All != nil && len(e.All) == 0 {
		return fmt.Errorf("enable_lora_list is an empty list")
	}
	if len(e.PerTarget) > targets {
		return fmt.Errorf("enable_lora_list has %d entries for %d target modules", len(e.PerTarget), targets)
	}
	for i, l := range e.PerTarget {
		if l != nil && len(l) == 0 {
			return fmt.Errorf("enable_lora_list[%d] is an empty list", i)
		}
	}
	return nil
}

// MarshalJSON writes the flat form, the nested form, or null.
func (e EnableLoRAList) MarshalJSON() ([]byte, error) {
	switch {
	case e.All != nil:
		return json.Marshal(e.All)
	case e.PerTarget != nil:
		return json.Marshal(e.PerTarget)
	}
	return []byte("null"), nil
}

// UnmarshalJSON reads either form, or null.
func (e *EnableLoRAList) UnmarshalJSON(b []byte) error {
	*e = EnableLoRAList{}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("enable_lora_list: want a list, got %s", b)
	}
	if len(raw) == 0 {
		return nil
	}
	flat := make([]bool, 0, len(raw))
	for _, r := range raw {
		switch string(bytes.TrimSpace(r)) {
		case "true":
			flat = append(flat, true)
		case "false":
			flat = append(flat, false)
		}
	}
	if len(flat) == len(raw) {
		e.All = flat
		return nil
	}
	e.PerTarget = make([][]bool, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &e.PerTarget[i]); err != nil {
			return fmt.Errorf("enable_lora_list[%d]: want a list of booleans or null, got %s", i, r)
		}
	}
	return nil
}
