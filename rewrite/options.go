package rewrite

// Option configures InjectLoRA and Apply.
type Option func(*options) error

type options struct {
	seed     uint64
	asInputs bool
}

// WithSeed sets the seed that A's initial values are drawn with. The
// default is 0. Each module draws from its own stream, derived from the
// seed and its name.
func WithSeed(seed uint64) Option {
	return func(o *options) error {
		o.seed = seed
		return nil
	}
}

// AsInputs makes each A and B a graph input whose rank dimension is
// dynamic, with a rank-0 default initializer ([in, 0] and [0, out]). Fed
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

func applyOptions(opts []Option) (options, error) {
	var o options
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return options{}, err
		}
	}
	return o, nil
}
