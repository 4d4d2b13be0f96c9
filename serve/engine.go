package serve

import (
	"context"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// Engine serves one base model with many adapters. It is safe for
// concurrent use.
type Engine struct{}

func errorf(format string, args ...any) error { return pkgerr.Errorf("serve", format, args...) }

var errNotYet = errorf("not implemented yet")

// New loads the base model at modelPath.
func New(modelPath string, opts Options) (*Engine, error) { return nil, errNotYet }

// Close stops the engine: requests in flight end with ErrClosed.
func (e *Engine) Close() error { return nil }

// Load loads the adapter at path under name.
func (e *Engine) Load(name, path string, replace bool) (AdapterInfo, error) {
	return AdapterInfo{}, errNotYet
}

// Unload removes the adapter name.
func (e *Engine) Unload(name string) error { return errNotYet }

// Adapters lists the base, then the adapters by name.
func (e *Engine) Adapters() []AdapterInfo { return nil }

// Generate queues r and calls emit for each token.
func (e *Engine) Generate(ctx context.Context, r Request, emit func(Event) error) (Usage, error) {
	return Usage{}, errNotYet
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats { return Stats{} }
