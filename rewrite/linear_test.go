package rewrite

import (
	"strings"
	"testing"
)

// TestFindLinears checks the number of linear layers and the names of the
// first, on the real models and on the built ones.
func TestFindLinears(t *testing.T) {
	tests := []struct {
		model            testModel
		count            int
		module, node, op string
		in, out          int64
		nameFrom         string
	}{
		{realModels[0], 14, "distilbert.transformer.layer.0.attention.q_lin", "MatMul_27", "MatMul", 2, 2, "bias"},
		{realModels[1], 48, "h.0.attn.c_attn", "Gemm_67", "Gemm", 4, 12, "weight"},
		{realModels[2], 15, "model.layers.0.attn.q_proj", "/model/layers.0/attn/q_proj/MatMul", "MatMul", 16, 16, "node"},
		{builtModels[0], 15, "model.layers.0.self_attn.q_proj", "/model/layers.0/self_attn/q_proj/MatMul", "MatMul", 16, 16, "node"},
		{builtModels[2], 9, "transformer.h.0.attn.c_attn", "/transformer/h.0/attn/c_attn/MatMul", "MatMul", 16, 48, "node"},
		{builtModels[3], 9, "transformer.h.0.attn.c_attn", "/transformer/h.0/attn/c_attn/Gemm", "Gemm", 16, 48, "node"},
		{builtModels[4], 9, "transformer.h.0.attn.c_attn", "", "MatMul", 16, 48, "weight"},
	}
	for i, tc := range tests {
		t.Run(tc.model.name, func(t *testing.T) {
			m := tc.model.load(t)
			ls, err := FindLinears(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(ls) != tc.count {
				t.Errorf("test %d: got %d linear layers want %d", i, len(ls), tc.count)
			}
			if len(ls) == 0 {
				return
			}
			l := ls[0]
			if l.Module != tc.module || (tc.node != "" && l.NodeName != tc.node) || l.Op != tc.op || l.In != tc.in || l.Out != tc.out || l.NameFrom != tc.nameFrom {
				t.Errorf("test %d: first layer: got %s %q %s %d×%d from %s, want %s %q %s %d×%d from %s",
					i, l.Module, l.NodeName, l.Op, l.In, l.Out, l.NameFrom, tc.module, tc.node, tc.op, tc.in, tc.out, tc.nameFrom)
			}
			seen := map[string]string{}
			for _, l := range ls {
				if w, ok := seen[l.Module]; ok && w != l.Weight {
					t.Errorf("module %q names two weights, %q and %q", l.Module, w, l.Weight)
				}
				seen[l.Module] = l.Weight
			}
		})
	}
}

// TestModuleNameRules checks the naming rules on names that exporters give.
func TestModuleNameRules(t *testing.T) {
	nodes := []struct{ name, want string }{
		{"/model/layers.0/self_attn/q_proj/MatMul", "model.layers.0.self_attn.q_proj"},
		{"/lm_head/MatMul", "lm_head"},
		{"model/dense/MatMul", "model.dense"},
		{"Gemm_67", ""},
		{"/MatMul", ""},
		{"", ""},
	}
	for i, tc := range nodes {
		if got := nodePathModule(tc.name); got != tc.want {
			t.Errorf("node %d %q: got %q want %q", i, tc.name, got, tc.want)
		}
	}
	params := []struct{ name, kind, want string }{
		{"h.0.attn.c_attn.weight_resize", "weight", "h.0.attn.c_attn"},
		{"model.layers.0.attn.q_proj.MatMul.weight", "weight", "model.layers.0.attn.q_proj"},
		{"pre_classifier.weight", "weight", "pre_classifier"},
		{"distilbert.transformer.layer.0.attention.q_lin.bias", "bias", "distilbert.transformer.layer.0.attention.q_lin"},
		{"302", "weight", ""},
		{"onnx::MatMul_1234", "weight", ""},
		{"weight", "weight", ""},
	}
	for i, tc := range params {
		if got := paramModule(tc.name, tc.kind); got != tc.want {
			t.Errorf("param %d %q: got %q want %q", i, tc.name, got, tc.want)
		}
	}
}

// TestMatchTargets checks full-match semantics against module and node
// names, and the error for patterns that match nothing.
func TestMatchTargets(t *testing.T) {
	m := realModel(t, "tiny-llama-genai-fp16/model.onnx")
	ls, err := FindLinears(m)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		patterns []string
		want     int
		reason   string
	}{
		{[]string{".*q_proj.*"}, 2, "the usual form"},
		{[]string{".*(q|v)_proj"}, 4, "alternation"},
		{[]string{"q_proj"}, 0, "a bare name does not full-match"},
		{[]string{"/model/layers.0/attn/q_proj/MatMul"}, 1, "a node name"},
		{[]string{"model.layers.1.mlp.*", "lm_head"}, 4, "several patterns"},
		{[]string{"nomatch.*"}, 0, "nothing"},
	}
	for i, tc := range tests {
		got, err := MatchTargets(ls, tc.patterns)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("test %d (%s): got %d layers, want an error", i, tc.reason, len(got))
				continue
			}
			for _, want := range []string{"matched no linear layer", "model.layers.0.attn.q_proj", "lm_head", tc.patterns[0]} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("test %d (%s): error %q does not mention %q", i, tc.reason, err, want)
				}
			}
			continue
		}
		if err != nil || len(got) != tc.want {
			t.Errorf("test %d (%s): got %d layers, %v; want %d", i, tc.reason, len(got), err, tc.want)
		}
	}
	if _, err := MatchTargets(ls, []string{"(("}); err == nil {
		t.Errorf("a bad regex gave no error")
	}
}

// TestFindLinearsSkipsBranches checks that an adapted model's branch
// MatMuls are not taken for layers.
func TestFindLinearsSkipsBranches(t *testing.T) {
	m := builtModels[2].load(t)
	before, err := FindLinears(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := InjectLoRA(m, config(4, 8, ".*")); err != nil {
		t.Fatal(err)
	}
	after, err := FindLinears(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("adapted model: got %d layers want %d", len(after), len(before))
	}
}

// TestModuleListCollapses checks that long module lists collapse numbers.
func TestModuleListCollapses(t *testing.T) {
	var ls []Linear
	for i := 0; i < 40; i++ {
		for _, p := range []string{"q_proj", "v_proj"} {
			ls = append(ls, Linear{Module: "model.layers." + string(rune('0'+i%10)) + string(rune('0'+i/10)) + ".attn." + p})
		}
	}
	got := moduleList(ls)
	if want := "model.layers.*.attn.q_proj, model.layers.*.attn.v_proj (layer numbers shown as *)"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}
