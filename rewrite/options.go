package rewrite

import "github.com/peftonnx/peftonnx/internal/option"

// Option configures InjectLoRA, InjectPrefix, Apply and the typed apply
// functions. Some options belong to one PEFT type (AsInputs to LoRA,
// PrefixHeadDim and PrefixReplacePast to prefix tuning); given to a
// function of the other type, they are an error.
type Option func(*options) error

type options struct {
	seed uint64
	// LoRA only.
	asInputs bool
	modules  []string
	loftq    *LoftQOptions // init "loftq"; nil: the defaults (init_loftq.go)
	// Merge and MergeAdapter only.
	dequantize bool
	requantize bool // int4 layers (merge_nbits.go)
	// Unmerge only: its plan of the folds to take out.
	unmerge bool
	// Prefix tuning only.
	headDim     int
	replacePast bool
}

// WithSeed sets the seed that fresh adapter weights are drawn with: LoRA's
// A, or the prefix parameters. The default is 0. Each module or parameter
// draws from its own stream, derived from the seed and its name.
func WithSeed(seed uint64) Option {
	return func(o *options) error {
		o.seed = seed
		return nil
	}
}

// AsInputs makes each A and B a graph input whose rank dimension is
// dynamic, with a rank-0 default initializer ([in, 0] and [0, out]; a
// convolution's are rank-1 zeros, since a Conv has no empty form). Fed
// nothing, the model computes the base model's outputs; fed the A and B of
// any rank (see Feeds), it runs that adapter, on one session. The graph
// then has no scaling node: Feeds folds each module's scaling into B.
//
// ONNX Runtime 1.24 crashes at its default optimization level on such a
// model with float16 factors. The runtime package works around it; other
// hosts must disable its optimizer FuseFp16InitializerToFp32NodeTransformer
// (session config entry "optimization.disable_specified_optimizers") or
// open the model at ORT_ENABLE_EXTENDED.
func AsInputs() Option {
	return func(o *options) error {
		o.asInputs = true
		return nil
	}
}

// WithModules adds targets to InjectLoRA's cfg.TargetModules as HF PEFT's
// target_modules list names them: "q_proj" selects every module called
// q_proj or ending in ".q_proj" (adapter.ModuleTargets), and
// adapter.AllLinear every linear layer but the output head. The config
// that the model records holds them as full-match regexes, which is how
// they are written back. Apply takes an adapter's own modules and refuses
// this option.
func WithModules(names ...string) Option {
	return func(o *options) error {
		for _, n := range names {
			if n == "" {
				return errorf("WithModules: an empty module name")
			}
		}
		o.modules = append(o.modules, names...)
		return nil
	}
}

// optionKind says which PEFT type a function that takes options adapts
// with.
type optionKind int

const (
	loraOptions optionKind = iota
	prefixOptions
)

// applyOptions collects opts for a function of the PEFT type kind, and
// refuses the options of the other type.
func applyOptions(opts []Option, kind optionKind) (options, error) {
	var o options
	if err := option.Apply(&o, opts); err != nil {
		return options{}, err
	}
	switch {
	case kind == loraOptions && (o.headDim != 0 || o.replacePast):
		return options{}, errorf("PrefixHeadDim and PrefixReplacePast are options of prefix tuning, not of LoRA")
	case kind == prefixOptions && o.asInputs:
		return options{}, errorf("AsInputs makes LoRA factors graph inputs; a prefix has none")
	case kind == prefixOptions && o.loftq != nil:
		return options{}, errorf("WithLoftQ sets how LoRA's init loftq quantizes; a prefix has no such init")
	case kind == prefixOptions && len(o.modules) > 0:
		return options{}, errorf("WithModules chooses the layers LoRA adapts; a prefix adapts none")
	}
	return o, nil
}
