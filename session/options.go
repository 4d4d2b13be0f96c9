package session

import (
	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/internal/option"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// Option configures Open and OpenModel.
type Option func(*options) error

type options struct {
	adapterPath string
	adapter     *adapter.Adapter
	runtime     []rt.Option
	spillAbove  int64
	name        string
}

// WithAdapterFile opens the session with the adapter at path: a
// HuggingFace PEFT directory or an .onnx_adapter file, LoRA or prefix. An
// adapter with a config but no weights is an error.
func WithAdapterFile(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errorf("WithAdapterFile: empty path")
		}
		o.adapterPath, o.adapter = path, nil
		return nil
	}
}

// WithAdapter opens the session with ad, an adapter in memory. The session
// does not keep it.
func WithAdapter(ad *adapter.Adapter) Option {
	return func(o *options) error {
		if ad == nil {
			return errorf("WithAdapter: nil adapter")
		}
		o.adapter, o.adapterPath = ad, ""
		return nil
	}
}

// WithRuntime adds options for ONNX Runtime (device, threads, memory
// settings). They come after the session's own, so they can override
// them.
func WithRuntime(opts ...rt.Option) Option {
	return func(o *options) error {
		o.runtime = append(o.runtime, opts...)
		return nil
	}
}

// WithSpillAbove sets the serialized size, in bytes, above which a model
// in memory is saved to a temporary folder with external data instead of
// being handed to ONNX Runtime as one message. The default is the
// protobuf limit of 2 GiB less 64 MiB for what serialization adds; a
// smaller value spills earlier, which tests use. It rejects n <= 0.
func WithSpillAbove(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return errorf("WithSpillAbove: want a positive size, got %d", n)
		}
		o.spillAbove = n
		return nil
	}
}

// WithName names the model in errors, such as "the training graph". The
// default is the model's file, or "the model".
func WithName(name string) Option {
	return func(o *options) error {
		o.name = name
		return nil
	}
}

// defaultSpillAbove is the protobuf limit less a margin.
const defaultSpillAbove = 2<<30 - 64<<20

func newOptions(opts []Option) (*options, error) {
	o := &options{spillAbove: defaultSpillAbove}
	if err := option.Apply(o, opts); err != nil {
		return nil, err
	}
	return o, nil
}
