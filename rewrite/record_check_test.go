package rewrite

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// tamperedRecord injects LoRA into the tiny LLaMA, then rewrites its
// record with edit as a hostile file would.
func tamperedRecord(t *testing.T, edit func(rec map[string]any, sites []map[string]any, m *graph.Model)) *graph.Model {
	t.Helper()
	m := builtModels[0].load(t)
	if _, _, err := InjectLoRA(m, config(4, 8, ".*(q|v)_proj")); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Proto.MetadataProps {
		if p.Key != MetadataKey {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(p.Value), &rec); err != nil {
			t.Fatal(err)
		}
		var sites []map[string]any
		for _, s := range rec["sites"].([]any) {
			sites = append(sites, s.(map[string]any))
		}
		edit(rec, sites, m)
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		p.Value = string(b)
		return m
	}
	t.Fatal("no LoRA record")
	return nil
}

// TestTamperedRecord merges and extracts models whose peftonnx.lora
// record lies about the graph (issue 16, C2 and E8): each is an error that
// names the record, and the model is left unchanged.
func TestTamperedRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(rec map[string]any, sites []map[string]any, m *graph.Model)
		want string
	}{
		{"in changed", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["in"] = 72.0 }, "features"},
		{"a is the base weight", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["a"] = s[0]["weight"] }, "is a base tensor"},
		{"a is another base weight", func(_ map[string]any, s []map[string]any, m *graph.Model) {
			s[0]["a"] = m.Graph().Initializer[0].Name
		}, "factor"},
		{"rank changed", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["r"] = 64.0 }, "rank 64"},
		{"huge rank", func(_ map[string]any, s []map[string]any, _ *graph.Model) { s[0]["r"] = 1e9 }, "limit"},
		{"fused with head dim 0", func(_ map[string]any, s []map[string]any, _ *graph.Model) {
			s[0]["enable"] = []any{true, false}
		}, "enable list"},
		{"version 99", func(rec map[string]any, _ []map[string]any, _ *graph.Model) { rec["version"] = 99.0 }, "version 99"},
		{"lists a base node", func(_ map[string]any, s []map[string]any, m *graph.Model) {
			n := m.Producer(s[1]["base_output"].(string))
			s[0]["nodes"] = append(s[0]["nodes"].([]any), n.Name)
		}, "base layer"},
		{"lists the node before a base layer", func(_ map[string]any, s []map[string]any, m *graph.Model) {
			n := m.Producer(s[0]["base_output"].(string))
			s[0]["nodes"] = append(s[0]["nodes"].([]any), m.Producer(n.Input[0]).Name)
		}, "undefined"},
		{"lists a base weight", func(_ map[string]any, s []map[string]any, _ *graph.Model) {
			s[0]["initializers"] = append(s[0]["initializers"].([]any), s[1]["weight"])
		}, "undefined"},
		{"lists the last node", func(rec map[string]any, _ []map[string]any, m *graph.Model) {
			nodes := m.Graph().Node
			rec["shared_nodes"] = []any{nodes[len(nodes)-1].Name}
		}, "graph output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tamperedRecord(t, tc.edit)
			before := graphBytes(t, m)
			for what, do := range map[string]func() error{
				"Merge":          func() error { return Merge(m) },
				"ExtractAdapter": func() error { _, err := ExtractAdapter(m); return err },
			} {
				if what == "ExtractAdapter" && strings.Contains(tc.name, "lists") {
					continue // extraction removes nothing
				}
				err := do()
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "LoRA record") {
					t.Errorf("%s: got %v, want an error about the LoRA record containing %q", what, err, tc.want)
				}
				if graphBytes(t, m) != before {
					t.Errorf("%s changed the model", what)
				}
			}
		})
	}
}

// TestInjectLimits asks for adapters far beyond any machine (issue 16,
// M5): each is an error naming the limit before anything is allocated,
// and a lower MaxNewBytes holds too.
func TestInjectLimits(t *testing.T) {
	m := builtModels[0].load(t)
	before := graphBytes(t, m)
	if _, _, err := InjectLoRA(m, config(1e9, 8, ".*q_proj")); err == nil || !strings.Contains(err.Error(), "PEFTONNX_MAX_RANK") {
		t.Errorf("rank 1e9: got %v", err)
	}
	defer func(n int64) { MaxNewBytes = n }(MaxNewBytes)
	MaxNewBytes = 64 << 20 // a user's own, lower limit
	if _, _, err := InjectLoRA(m, config(60000, 8, ".*")); err == nil || !strings.Contains(err.Error(), "PEFTONNX_MAX_NEW_BYTES") {
		t.Errorf("rank 60000 on every layer: got %v", err)
	}
	if _, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 1e7}); err == nil || !strings.Contains(err.Error(), "PEFTONNX_MAX_PREFIX_TOKENS") {
		t.Errorf("1e7 prefix tokens: got %v", err)
	}
	if _, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 8, PrefixProjection: true, PrefixProjectionHiddenSize: 1e9}); err == nil || !strings.Contains(err.Error(), "PEFTONNX_MAX_PROJECTION_HIDDEN") {
		t.Errorf("projection hidden 1e9: got %v", err)
	}
	if _, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 60000, PrefixProjection: true, PrefixProjectionHiddenSize: 1 << 20}); err == nil || !strings.Contains(err.Error(), "PEFTONNX_MAX_NEW_BYTES") {
		t.Errorf("a 60000-token prefix with a wide projection: got %v", err)
	}
	if graphBytes(t, m) != before {
		t.Error("a refused injection changed the model")
	}
}

// TestOnePEFTType refuses a prefix on a model with LoRA and LoRA on a
// prefixed model (issue 16, E6): training would leave the other adapter
// random or untrained.
func TestOnePEFTType(t *testing.T) {
	m := builtModels[0].load(t)
	if _, _, err := InjectLoRA(m, config(2, 4, ".*q_proj")); err != nil {
		t.Fatal(err)
	}
	before := graphBytes(t, m)
	if _, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2}); err == nil || !strings.Contains(err.Error(), "carries LoRA branches") {
		t.Errorf("prefix on a LoRA model: got %v", err)
	}
	if graphBytes(t, m) != before {
		t.Error("the refused prefix changed the model")
	}
	p := builtModels[0].load(t)
	if _, _, err := InjectPrefix(p, adapter.PrefixConfig{NumPrefixTokens: 2}); err != nil {
		t.Fatal(err)
	}
	before = graphBytes(t, p)
	if _, _, err := InjectLoRA(p, config(2, 4, ".*q_proj")); err == nil || !strings.Contains(err.Error(), "carries a prefix") {
		t.Errorf("LoRA on a prefixed model: got %v", err)
	}
	if graphBytes(t, p) != before {
		t.Error("the refused LoRA changed the model")
	}
}
