package adapter

import "strings"

// AllLinear is the target that selects every linear layer of a model but
// its output head, as HuggingFace PEFT's target_modules="all-linear" does.
// In TargetModules it stands alone for that choice; package rewrite
// resolves it against the model.
const AllLinear = "all-linear"

// ModuleTargets turns HuggingFace PEFT target_modules names ("q_proj",
// "attention.self.query"), which select a module whose name is the name or
// ends in "." and the name, into the equivalent full-match regexes of
// TargetModules. AllLinear stays as it is.
func ModuleTargets(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		if strings.EqualFold(n, AllLinear) { // PEFT lowers it too
			out[i] = AllLinear
			continue
		}
		out[i] = nameToRegexp(n)
	}
	return out
}

// Excluded reports whether module is one of ExcludeModules (HF PEFT's
// exclude_modules): a module that a target selects is left alone then.
func (c *LoRAConfig) Excluded(module string) bool {
	for _, p := range c.ExcludeModules {
		if re, err := compileFull(p); err == nil && re.MatchString(module) {
			return true
		}
	}
	return false
}
