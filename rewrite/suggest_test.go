package rewrite

import (
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
)

// TestSuggestTargets checks that each suggested group's --modules and
// --target select the same layers, and that those are the layers whose
// names say they belong to the group, on an anonymous LLaMA (roles from
// structure), a BERT (attention.output.dense against output.dense) and
// GPT-2 (fused c_attn, c_proj under attn and mlp).
func TestSuggestTargets(t *testing.T) {
	wantRoles := map[string][]Role{
		"attention q,v":         {RoleQuery, RoleValue},
		"attention qkv (fused)": {RoleQKV},
		"attention q,k,v,o":     {RoleQuery, RoleKey, RoleValue, RoleOutput, RoleQKV},
		"mlp":                   {RoleGate, RoleUp, RoleDown},
	}
	for _, tc := range []struct {
		model  testModel
		anon   bool
		groups []string
	}{
		{builtModels[0], true, []string{"attention q,v", "attention q,k,v,o", "mlp", "all linear"}},
		{builtModels[5], false, []string{"attention q,v", "attention q,k,v,o", "mlp", "all linear"}},
		{builtModels[2], false, []string{"attention qkv (fused)", "attention q,k,v,o", "mlp", "all linear"}},
	} {
		t.Run(tc.model.name, func(t *testing.T) {
			named := tc.model.load(t)
			truth, err := FindLinears(named)
			if err != nil {
				t.Fatal(err)
			}
			m := tc.model.load(t)
			if tc.anon {
				anonymize(m)
			}
			ls, err := FindLinears(m)
			if err != nil {
				t.Fatal(err)
			}
			groups := SuggestTargets(ls)
			var names []string
			for _, g := range groups {
				names = append(names, g.Name)
			}
			if !slices.Equal(names, tc.groups) {
				t.Fatalf("got groups %q, want %q", names, tc.groups)
			}
			for _, g := range groups {
				byTarget, err := MatchTargets(ls, []string{g.Target})
				if g.Name != "all linear" && err != nil {
					t.Fatal(err)
				}
				byModules := byTarget
				if len(g.Modules) > 0 {
					if byModules, err = MatchTargets(ls, adapter.ModuleTargets(g.Modules...)); err != nil {
						t.Fatal(err)
					}
				}
				if g.Name == "all linear" {
					if len(byModules) != g.Layers || len(byModules) != len(ls)-1 {
						t.Errorf("all linear: %d layers, group says %d, want %d", len(byModules), g.Layers, len(ls)-1)
					}
					continue
				}
				if !slices.Equal(LinearModules(byModules), LinearModules(byTarget)) || len(LinearModules(byModules)) != g.Layers {
					t.Errorf("%s: --modules %v selects %v, --target %q %v, group says %d", g.Name, g.Modules, LinearModules(byModules), g.Target, LinearModules(byTarget), g.Layers)
				}
				var want []string
				for i, l := range truth {
					r := roleFromName(l.Module)
					if r == "" {
						r = nameRole(l.Module)
					}
					if slices.Contains(wantRoles[g.Name], r) {
						want = append(want, ls[i].Module)
					}
				}
				if !slices.Equal(LinearModules(byModules), want) {
					t.Errorf("%s: selects %v, want %v", g.Name, LinearModules(byModules), want)
				}
			}
		})
	}
}

// TestNameRoleNeedsContext checks the names whose part depends on their
// parent module.
func TestNameRoleNeedsContext(t *testing.T) {
	for name, want := range map[string]Role{
		"bert.encoder.layer.0.attention.output.dense": RoleOutput,
		"bert.encoder.layer.0.intermediate.dense":     RoleUp,
		"bert.encoder.layer.0.output.dense":           RoleDown,
		"transformer.h.0.attn.c_proj":                 RoleOutput,
		"transformer.h.0.mlp.c_proj":                  RoleDown,
		"bert.pooler.dense":                           "",
	} {
		if got := nameRole(name); got != want {
			t.Errorf("nameRole(%q) = %q, want %q", name, got, want)
		}
	}
}
