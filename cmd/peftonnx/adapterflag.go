package main

import (
	"flag"
	"maps"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// addAdapterFlag declares --adapter on fs; usage says what the adapter is
// for.
func addAdapterFlag(fs *flag.FlagSet, usage string) *string {
	return fs.String("adapter", "", usage+": a HuggingFace PEFT `DIR` or an .onnx_adapter FILE")
}

// adapterKind names the PEFT type of ad in messages: "a LoRA adapter" or
// "a prefix adapter (PREFIX_TUNING)".
func adapterKind(ad *adapter.Adapter) string {
	if ad.Prefix != nil {
		return "a prefix adapter (" + ad.Prefix.PEFTType() + ")"
	}
	return "a LoRA adapter"
}

// spillAbove, when positive, lowers the size above which an adapted model
// goes to ONNX Runtime through a temporary file (session.WithSpillAbove).
// A variable for tests.
var spillAbove int64

// openAdapted opens a session on the model at modelPath with the adapter
// at adapterPath, or without one when adapterPath is "" (session.Open).
func openAdapted(modelPath, adapterPath string, opts ...ortrt.Option) (*session.Session, error) {
	sopts := []session.Option{session.WithRuntime(opts...)}
	if adapterPath != "" {
		sopts = append(sopts, session.WithAdapterFile(adapterPath))
	}
	if spillAbove > 0 {
		sopts = append(sopts, session.WithSpillAbove(spillAbove))
	}
	return session.Open(modelPath, sopts...)
}

// paramNames lists the names of an adapter's input parameters, sorted.
func paramNames(params map[string]*adapter.Tensor) string {
	return strings.Join(slices.Sorted(maps.Keys(params)), ", ")
}
