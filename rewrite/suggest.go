package rewrite

import (
	"regexp"
	"slices"
	"strings"
)

// RoleQKV is a fused query-key-value projection (GPT-2's c_attn), which
// only names show.
const RoleQKV Role = "qkv"

// TargetGroup is a usual choice of layers to adapt, as SuggestTargets
// finds it in a model.
type TargetGroup struct {
	// Name says what the group is: "attention q,v", "attention qkv
	// (fused)", "attention q,k,v,o", "mlp" or "all linear".
	Name string
	// Modules are the HF PEFT target_modules names that select the group
	// and nothing else (adapter.ModuleTargets), and Target the one
	// full-match regex that selects the same layers. Where no suffix
	// names select the group alone, Modules is empty and Target matches
	// the layer numbers.
	Modules []string
	Target  string
	// Layers counts the modules that the group adapts.
	Layers int
}

// SuggestTargets returns the usual target groups of a model's linear
// layers (see FindLinears): the attention query and value projections,
// all four attention projections, the MLP, and every linear layer but the
// head. Each layer's part comes from its Role where the structure shows
// it, else from its module name (q_proj, query, q_lin, c_attn, o_proj,
// attention.output.dense, fc1, intermediate.dense, …). Groups whose
// layers cannot be told apart by name suffixes are left out.
func SuggestTargets(ls []Linear) []TargetGroup {
	roleOf := map[string]Role{}
	var modules []string
	for _, l := range ls {
		if _, ok := roleOf[l.Module]; ok {
			continue
		}
		modules = append(modules, l.Module)
		r := l.Role
		if r == "" {
			r = nameRole(l.Module)
		}
		roleOf[l.Module] = r
	}
	pick := func(roles ...Role) []string {
		var out []string
		for _, m := range modules {
			if slices.Contains(roles, roleOf[m]) {
				out = append(out, m)
			}
		}
		return out
	}
	var groups []TargetGroup
	add := func(name string, members []string) {
		if len(members) == 0 {
			return
		}
		if names, ok := suffixNames(members, modules); ok {
			groups = append(groups, TargetGroup{Name: name, Modules: names, Target: suffixRegexp(names), Layers: len(members)})
			return
		}
		// Suffixes cannot tell the group apart (BERT's output.dense ends
		// attention.output.dense too): a regex over the layer numbers can.
		target := numberedRegexp(members)
		if sel, err := MatchTargets(ls, []string{target}); err == nil && slices.Equal(LinearModules(sel), members) {
			groups = append(groups, TargetGroup{Name: name, Target: target, Layers: len(members)})
		}
	}
	add("attention q,v", pick(RoleQuery, RoleValue))
	add("attention qkv (fused)", pick(RoleQKV))
	add("attention q,k,v,o", pick(RoleQuery, RoleKey, RoleValue, RoleOutput, RoleQKV))
	add("mlp", pick(RoleGate, RoleUp, RoleDown))
	all := 0
	for _, m := range modules {
		if i := slices.IndexFunc(ls, func(l Linear) bool { return l.Module == m }); allLinear(ls[i]) {
			all++
		}
	}
	if all > 0 {
		groups = append(groups, TargetGroup{Name: "all linear", Modules: []string{"all-linear"}, Target: "", Layers: all})
	}
	return groups
}

// suffixNames returns, for the members of a group, the shortest trailing
// segment runs that select them and no other of all modules, as HF
// PEFT's target_modules names match; ok is false where a member needs
// its layer number to be told apart.
func suffixNames(members, all []string) ([]string, bool) {
	in := map[string]bool{}
	for _, m := range members {
		in[m] = true
	}
	var names []string
	for _, m := range members {
		segs := strings.Split(m, ".")
		found := ""
		for k := 1; k <= len(segs) && found == ""; k++ {
			suffix := strings.Join(segs[len(segs)-k:], ".")
			if strings.Trim(segs[len(segs)-k], "0123456789") == "" {
				return nil, false
			}
			clean := true
			for _, o := range all {
				if !in[o] && (o == suffix || strings.HasSuffix(o, "."+suffix)) {
					clean = false
					break
				}
			}
			if clean {
				found = suffix
			}
		}
		if found == "" {
			return nil, false
		}
		if !slices.Contains(names, found) {
			names = append(names, found)
		}
	}
	return names, true
}

// numberedRegexp is the full-match regex that selects modules whatever
// their layer numbers: numeric segments match any number.
func numberedRegexp(modules []string) string {
	var alts []string
	for _, m := range modules {
		segs := strings.Split(m, ".")
		for i, s := range segs {
			if s != "" && strings.Trim(s, "0123456789") == "" {
				segs[i] = `\d+`
			} else {
				segs[i] = regexp.QuoteMeta(s)
			}
		}
		if alt := strings.Join(segs, `\.`); !slices.Contains(alts, alt) {
			alts = append(alts, alt)
		}
	}
	return strings.Join(alts, "|")
}

// suffixRegexp is the full-match regex that selects what names select as
// target_modules.
func suffixRegexp(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = regexp.QuoteMeta(n)
	}
	if len(q) == 1 {
		return `(.*\.)?` + q[0]
	}
	return `(.*\.)?(` + strings.Join(q, "|") + `)`
}

// nameRole reads a layer's part from its module name, for models whose
// structure does not show it (fused attention ops, fused QKV).
func nameRole(module string) Role {
	segs := strings.Split(strings.ToLower(module), ".")
	last := segs[len(segs)-1]
	parent, grand := "", ""
	if len(segs) > 1 {
		parent = segs[len(segs)-2]
	}
	if len(segs) > 2 {
		grand = segs[len(segs)-3]
	}
	attn := func(s string) bool {
		return strings.Contains(s, "attn") || strings.Contains(s, "attention")
	}
	switch last {
	case "q_proj", "q_lin", "query", "q", "wq", "to_q":
		return RoleQuery
	case "k_proj", "k_lin", "key", "k", "wk", "to_k":
		return RoleKey
	case "v_proj", "v_lin", "value", "v", "wv", "to_v":
		return RoleValue
	case "qkv_proj", "c_attn", "query_key_value", "wqkv", "qkv", "in_proj", "qkv_lin":
		return RoleQKV
	case "o_proj", "out_proj", "out_lin", "wo", "to_out":
		return RoleOutput
	case "gate_proj", "w1", "wi_0":
		return RoleGate
	case "up_proj", "fc1", "lin1", "c_fc", "fc_in", "dense_h_to_4h", "w3", "wi_1", "wi":
		return RoleUp
	case "down_proj", "fc2", "lin2", "fc_out", "dense_4h_to_h", "w2":
		return RoleDown
	case "c_proj":
		if attn(parent) {
			return RoleOutput
		}
		return RoleDown
	case "dense":
		switch {
		case attn(parent) || (parent == "output" && attn(grand)):
			return RoleOutput
		case parent == "intermediate":
			return RoleUp
		case parent == "output":
			return RoleDown
		}
	}
	return ""
}
