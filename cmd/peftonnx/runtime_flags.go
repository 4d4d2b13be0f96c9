package main

import (
	"flag"

	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// runtimeFlags are --threads and --device: how a command that runs a
// model (run, generate, demo) runs ONNX Runtime.
type runtimeFlags struct {
	threads *int
	device  *string
}

// addRuntimeFlags declares --threads and --device on fs.
func addRuntimeFlags(fs *flag.FlagSet) runtimeFlags {
	return runtimeFlags{
		threads: fs.Int("threads", 0, "intra-op threads, `N`; 0 lets ONNX Runtime choose"),
		device:  fs.String("device", "cpu", "run on `cpu`, cuda or cuda:N"),
	}
}

// check refuses a negative --threads.
func (f runtimeFlags) check(cx *context) error {
	if *f.threads < 0 {
		return cx.usagef("--threads must be 0 or more, got %d", *f.threads)
	}
	return nil
}

// options returns the runtime options that the flags ask for.
func (f runtimeFlags) options() []ortrt.Option {
	return []ortrt.Option{ortrt.WithDevice(*f.device), ortrt.WithIntraOpThreads(*f.threads)}
}
