package main

import (
	"fmt"
	"strconv"

	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
)

// A limit is a bound on what one command may ask for, which the
// environment variable env sets (README.md, "Limits").
type limit struct {
	env string
	def int64 // the package's default, restored when env is unset
	set func(int64)
}

// limits are the bounds a user may set, each with a default far above
// real use.
var limits = []limit{
	{"PEFTONNX_MAX_RANK", rewrite.MaxRank, func(n int64) { rewrite.MaxRank = n }},
	{"PEFTONNX_MAX_PREFIX_TOKENS", rewrite.MaxPrefixTokens, func(n int64) { rewrite.MaxPrefixTokens = n }},
	{"PEFTONNX_MAX_PROJECTION_HIDDEN", rewrite.MaxProjectionHidden, func(n int64) { rewrite.MaxProjectionHidden = n }},
	{"PEFTONNX_MAX_NEW_BYTES", rewrite.MaxNewBytes, func(n int64) { rewrite.MaxNewBytes = n }},
	{"PEFTONNX_MAX_LINE_BYTES", int64(train.MaxLineBytes), func(n int64) { train.MaxLineBytes = int(min(n, 1<<40)) }},
	{"PEFTONNX_MAX_THREADS", int64(ortrt.MaxThreads), func(n int64) { ortrt.MaxThreads = int(min(n, 1<<20)) }},
}

// setLimits sets the limits that getenv gives a value, and the others to
// their defaults; a value that is not a positive integer is an error
// naming the variable.
func setLimits(getenv func(string) string) error {
	for _, l := range limits {
		v := getenv(l.env)
		if v == "" {
			l.set(l.def)
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("%s=%q: want a positive whole number", l.env, v)
		}
		l.set(n)
	}
	return nil
}
