package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestInspectGolden runs inspect on the real models and compares its text
// and JSON output with testdata/inspect/*.
func TestInspectGolden(t *testing.T) {
	for _, test := range []struct {
		golden  string
		model   string
		args    []string
		linears int
	}{
		{"tiny-llama.txt", "tiny-llama-genai-fp16", nil, 15},
		{"tiny-llama.json", "tiny-llama-genai-fp16", []string{"--json"}, 15},
		{"tiny-llama-targets.txt", "tiny-llama-genai-fp16", []string{"--target", ".*q_proj.*", "--target", "lm_head"}, 15},
		{"tiny-llama-targets.json", "tiny-llama-genai-fp16", []string{"--target", ".*q_proj.*", "--target", "lm_head", "--json"}, 15},
		{"gpt2-past.txt", "gpt2-past-torch16", nil, 48},
		{"gpt2-past.json", "gpt2-past-torch16", []string{"--json"}, 48},
		{"distilbert.txt", "distilbert-optimum", nil, 14},
		{"distilbert.json", "distilbert-optimum", []string{"--json"}, 14},
		{"lora-inputs.txt", "lora-inputs-ort", nil, 0},
	} {
		model := sharedModel(t, test.model)
		out, errOut, code := cli(t, append([]string{"inspect", model}, test.args...)...)
		if code != 0 || errOut != "" {
			t.Errorf("%s: got status %d, stderr %q", test.golden, code, errOut)
			continue
		}
		golden(t, filepath.Join("inspect", test.golden), out)
		if strings.HasSuffix(test.golden, ".json") {
			var doc inspection
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				t.Errorf("%s: output is not JSON: %v", test.golden, err)
				continue
			}
			if len(doc.Linears) != test.linears {
				t.Errorf("%s: got %d linear layers, want %d", test.golden, len(doc.Linears), test.linears)
			}
		}
	}
}

func TestInspectFacts(t *testing.T) {
	out, errOut, code := cli(t, "inspect", sharedModel(t, "tiny-llama-genai-fp16"), "--json", "--target", ".*attn.*")
	if code != 0 {
		t.Fatalf("got status %d, stderr %q", code, errOut)
	}
	var doc inspection
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if got := doc.Linears[0]; got.Module != "model.layers.0.attn.q_proj" || got.Node != "/model/layers.0/attn/q_proj/MatMul" || got.In != 16 || got.Out != 16 {
		t.Errorf("got first linear %+v, want model.layers.0.attn.q_proj 16×16", got)
	}
	if doc.Targets == nil || len(doc.Targets.Modules) != 8 {
		t.Errorf("got targets %+v, want the 8 attention projections", doc.Targets)
	}
	if len(doc.Opsets) != 2 || doc.Opsets[0] != (opsetInfo{"ai.onnx", 14}) || doc.Opsets[1] != (opsetInfo{"com.microsoft", 1}) {
		t.Errorf("got opsets %+v, want ai.onnx 14 and com.microsoft 1", doc.Opsets)
	}
	if in := doc.Inputs[3]; in.Name != "past_key_values.0.key" || in.DType != "float16" || len(in.Shape) != 4 || in.Shape[0] != "batch_size" || in.Shape[1] != float64(1) {
		t.Errorf("got input %+v, want past_key_values.0.key float16 [batch_size, 1, past_sequence_length, 16]", in)
	}
}

// TestInspectErrors checks the errors for models that cannot be read and
// targets that match nothing.
func TestInspectErrors(t *testing.T) {
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	real, err := os.ReadFile(llama)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncated := write("truncated.onnx", real[:100])
	garbage := write("garbage.onnx", []byte("this is not a protobuf \x00\xff\xfe at all"))
	empty := write("empty.onnx", nil)
	// The model without its model.onnx.data beside it.
	if err := os.Mkdir(filepath.Join(dir, "alone"), 0o755); err != nil {
		t.Fatal(err)
	}
	alone := write(filepath.Join("alone", "model.onnx"), real)
	missing := filepath.Join(dir, "missing.onnx")

	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"missing file", []string{missing}, 1, []string{missing, "no such file"}},
		{"truncated model", []string{truncated}, 1, []string{truncated, "not an ONNX model"}},
		{"garbage", []string{garbage}, 1, []string{garbage, "not an ONNX model"}},
		{"empty file", []string{empty}, 1, []string{empty, "empty model"}},
		{"missing external data", []string{alone}, 1, []string{alone, "model.onnx.data", "missing"}},
		{"target matches nothing", []string{llama, "--target", "q_proj"}, 1, []string{`"q_proj"`, "matched no linear layer", "model.layers.0.attn.q_proj", "lm_head"}},
		{"bad regex", []string{llama, "--target", "(("}, 1, []string{`"(("`}},
		{"no model", nil, 2, []string{"inspect: want one MODEL, got 0 arguments"}},
		{"two models", []string{llama, llama}, 2, []string{"want one MODEL, got 2"}},
		{"unknown flag", []string{llama, "--frob"}, 2, []string{"flag provided but not defined: -frob", "peftonnx inspect -h"}},
	} {
		out, errOut, code := cli(t, append([]string{"inspect"}, test.args...)...)
		wantError(t, test.reason, out, errOut, code, test.code, test.parts...)
	}
}

// TestInspectModules checks that --modules selects by suffix, as HF PEFT's
// target_modules does, the same layers as the equivalent --target, and
// that all-linear leaves out the output head only.
func TestInspectModules(t *testing.T) {
	model := sharedModel(t, "distilbert-optimum")
	modules := func(args ...string) []string {
		out := runOK(t, append([]string{"inspect", model, "--json"}, args...)...)
		var in inspection
		if err := json.Unmarshal([]byte(out), &in); err != nil {
			t.Fatal(err)
		}
		return in.Targets.Modules
	}
	byName := modules("--modules", "q_lin,attention.v_lin")
	byRegex := modules("--target", `.*\.(q_lin|v_lin)`)
	if len(byName) != 4 || !reflect.DeepEqual(byName, byRegex) {
		t.Errorf("--modules selected %v, --target %v; want the same 4", byName, byRegex)
	}
	all := modules("--modules", "all-linear")
	if len(all) != 13 || slices.Contains(all, "classifier") || !slices.Contains(all, "pre_classifier") {
		t.Errorf("all-linear selected %v, want the 13 layers but the classifier", all)
	}
	both := modules("--modules", "q_lin", "--target", ".*ffn.lin1")
	if len(both) != 4 {
		t.Errorf("--modules q_lin with --target .*ffn.lin1 selected %v, want 4 layers", both)
	}
}
