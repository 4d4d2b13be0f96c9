package tokenizer

import (
	"fmt"

	"github.com/peftonnx/peftonnx/internal/option"
)

// DefaultMaxFileBytes is the largest tokenizer.json that Load reads unless
// told otherwise (WithMaxFileBytes): 64 MiB, four times the largest
// tokenizer files of released models (Gemma's, with 256k tokens).
const DefaultMaxFileBytes = 64 << 20

// DefaultMaxTextBytes is the longest text, in bytes, that Encode takes
// unless told otherwise (WithMaxTextBytes): 1 MiB, a few hundred thousand
// tokens, more than any model we meet has context for.
const DefaultMaxTextBytes = 1 << 20

// maxTextBytesLimit is the most that WithMaxTextBytes allows: the merge
// loop indexes a word's symbols with int32.
const maxTextBytesLimit = 1 << 30

// options are the limits of a Tokenizer.
type options struct {
	maxFileBytes int64
	maxTextBytes int
}

// Option sets a limit of Load or Parse.
type Option func(*options) error

// WithMaxFileBytes sets the largest tokenizer.json (and
// tokenizer_config.json) that Load reads; n must be positive.
func WithMaxFileBytes(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("largest file size %d is not positive", n)
		}
		o.maxFileBytes = n
		return nil
	}
}

// WithMaxTextBytes sets the longest text, in bytes, that Encode takes; n
// must be positive and at most 1 GiB.
func WithMaxTextBytes(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("longest text %d is not positive", n)
		}
		if n > maxTextBytesLimit {
			return fmt.Errorf("longest text %d is more than %d", n, maxTextBytesLimit)
		}
		o.maxTextBytes = n
		return nil
	}
}

// newOptions applies opts to the defaults.
func newOptions(opts []Option) (options, error) {
	o := options{maxFileBytes: DefaultMaxFileBytes, maxTextBytes: DefaultMaxTextBytes}
	err := option.Apply(&o, opts)
	return o, err
}
