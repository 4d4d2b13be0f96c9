package main

import (
	"flag"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
)

// targetFlags are --target and --modules, the two ways to name the
// layers to adapt: full-match regexes (PaddleNLP's target_modules) and
// HF PEFT's target_modules names, which match by suffix.
type targetFlags struct {
	targets, modules stringList
}

// addTargetFlags declares --target and --modules on fs; what says what the
// selected layers are for ("adapt", "show", "quantize").
func addTargetFlags(fs *flag.FlagSet, what string) *targetFlags {
	f := &targetFlags{}
	fs.Var(&f.targets, "target", what+" the linear layers whose module or node name fully matches `RE` (repeatable)")
	fs.Var(&f.modules, "modules", what+" the modules `NAMES` (comma-separated) name as HF PEFT's target_modules: q_proj matches a module q_proj or ending in .q_proj; all-linear is every linear layer but the output head")
	return f
}

// patterns returns the regexes that --target and --modules give together
// (see adapter.ModuleTargets), --target first.
func (f *targetFlags) patterns() []string {
	out := append([]string{}, f.targets...)
	var names []string
	for _, v := range f.modules {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	return append(out, adapter.ModuleTargets(names...)...)
}
