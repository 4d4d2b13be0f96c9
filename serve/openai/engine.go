package openai

import (
	"context"

	"github.com/peftonnx/peftonnx/serve"
)

// Engine is what the server uses of the serving engine; *serve.Engine
// implements it.
type Engine interface {
	Generate(ctx context.Context, r serve.Request, emit func(serve.Event) error) (serve.Usage, error)
	Load(name, path string, replace bool) (serve.AdapterInfo, error)
	Unload(name string) error
	Adapters() []serve.AdapterInfo
	Stats() serve.Stats
}

var _ Engine = (*serve.Engine)(nil)
