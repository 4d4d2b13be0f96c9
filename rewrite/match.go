package rewrite

import (
	"regexp"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
)

// MatchTargets returns the layers whose module name or node name matches
// one of patterns as a whole, as Python's re.fullmatch does: each pattern
// is compiled as ^(?:pattern)$. ".*q_proj.*" is the usual form. The
// pattern adapter.AllLinear selects every linear layer but the output head
// (Linear.Head), as HF PEFT's "all-linear" does; adapter.ModuleTargets
// turns PEFT's suffix names into patterns. A pattern that does not compile
// is an error, and so is a set of patterns that matches nothing: its
// message lists the module names that exist.
func MatchTargets(linears []Linear, patterns []string) ([]Linear, error) {
	res, all, err := compileTargets(patterns)
	if err != nil {
		return nil, err
	}
	var out []Linear
	for _, l := range linears {
		if (all && allLinear(l)) || matchAny(res, l) >= 0 {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, errorf("targets %s matched no linear layer; the model's modules are: %s", quoteList(patterns), moduleList(linears))
	}
	return out, nil
}

// allLinear reports whether adapter.AllLinear selects l: a MatMul or Gemm
// (MatMulNBits) that is not the output head.
func allLinear(l Linear) bool {
	switch l.Op {
	case "MatMul", "Gemm", "MatMulNBits":
		return !l.Head
	}
	return false
}

// excludeModules drops the layers that cfg.ExcludeModules names (HF PEFT's
// exclude_modules); leaving none is an error.
func excludeModules(ls []Linear, cfg *adapter.LoRAConfig) ([]Linear, error) {
	if len(cfg.ExcludeModules) == 0 {
		return ls, nil
	}
	var out []Linear
	for _, l := range ls {
		if !cfg.Excluded(l.Module) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return nil, errorf("exclude_modules %s left none of the %d matched layers (%s)", quoteList(cfg.ExcludeModules), len(ls), moduleList(ls))
	}
	return out, nil
}

// compileTargets compiles full-match patterns, and reports whether
// adapter.AllLinear is among them.
func compileTargets(patterns []string) ([]*regexp.Regexp, bool, error) {
	if len(patterns) == 0 {
		return nil, false, errorf("no target modules given")
	}
	var res []*regexp.Regexp
	all := false
	for _, p := range patterns {
		if p == adapter.AllLinear {
			all = true
			continue
		}
		re, err := regexp.Compile("^(?:" + p + ")$")
		if err != nil {
			return nil, false, errorf("target %q: %w", p, err)
		}
		res = append(res, re)
	}
	return res, all, nil
}

// matchAny returns the index of the first pattern that matches l's module
// or node name, or -1.
func matchAny(res []*regexp.Regexp, l Linear) int {
	for i, re := range res {
		if re.MatchString(l.Module) || (l.NodeName != "" && re.MatchString(l.NodeName)) {
			return i
		}
	}
	return -1
}

// moduleListLimit is the number of module names above which moduleList
// collapses layer numbers.
const moduleListLimit = 24

// moduleList names the modules of ls for messages. Long lists collapse
// numeric segments to "*" so that a 32-layer model reads as its 7 kinds of
// layer.
func moduleList(ls []Linear) string {
	if len(ls) == 0 {
		return "(none: the main graph has no layer LoRA adapts)"
	}
	seen := map[string]bool{}
	var names []string
	collapse := len(ls) > moduleListLimit
	for _, l := range ls {
		name := l.Module
		if collapse {
			segs := strings.Split(name, ".")
			for i, s := range segs {
				if s != "" && strings.Trim(s, "0123456789") == "" {
					segs[i] = "*"
				}
			}
			name = strings.Join(segs, ".")
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	s := strings.Join(names, ", ")
	if collapse {
		s += " (layer numbers shown as *)"
	}
	return s
}

// quoteList formats strings as a Go-quoted, comma-separated list.
func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "\"" + s + "\""
	}
	return "[" + strings.Join(q, ", ") + "]"
}
