package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
)

// mixedModel writes to out the prefixed model with the LoRA record of
// lora added, as a hand-edited file could carry both (prefix and inject
// refuse to make one); it returns out.
func mixedModel(t *testing.T, lora, prefixed, out string) string {
	t.Helper()
	l, err := graph.Load(lora)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m, err := graph.Load(prefixed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, p := range l.Proto.MetadataProps {
		if p.Key == rewrite.MetadataKey {
			m.Proto.MetadataProps = append(m.Proto.MetadataProps, p)
		}
	}
	if err := m.Save(out, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMergePrefix checks that merge refuses prefix tuning, a prefixed
// model or a prefix adapter, with a message that says why, and writes
// nothing.
func TestMergePrefix(t *testing.T) {
	dir := t.TempDir()
	base := builderBase(t, dir)
	prefixed, ad, _ := prefixedModel(t, prefixCases[0], base, dir)
	lora := filepath.Join(dir, "lora.onnx")
	runOK(t, "inject", base, "-o", lora, "--target", ".*q_proj")
	mixed := filepath.Join(dir, "mixed.onnx")
	_, errOut, code := cli(t, "prefix", lora, "-o", mixed, "--tokens", "2")
	wantError(t, "prefix on a LoRA model", "", errOut, code, 1, lora, "carries LoRA branches", "one PEFT type")
	_, errOut, code = cli(t, "inject", prefixed, "-o", mixed, "--target", ".*q_proj")
	wantError(t, "LoRA on a prefixed model", "", errOut, code, 1, prefixed, "carries a prefix", "one PEFT type")
	mixedModel(t, lora, prefixed, mixed)
	why := []string{"merge: ", "prefix tuning cannot be merged into weights", "KV-cache input", "not a change to any weight"}

	type mergeCase struct {
		reason string
		args   []string
		parts  []string
	}
	cases := []mergeCase{
		{"prefixed model", []string{prefixed}, append([]string{prefixed + " carries a prefix", "export-adapter"}, why...)},
		{"base with a prefix adapter", []string{base, "--adapter", ad}, append([]string{ad + " is a prefix adapter (PREFIX_TUNING)", "peftonnx apply"}, why...)},
		{"LoRA model with a prefix adapter", []string{lora, "--adapter", ad}, append([]string{ad + " is a prefix adapter"}, why...)},
		{"model with LoRA and a prefix", []string{mixed}, append([]string{mixed + " carries a prefix"}, why...)},
	}
	if _, err := os.Stat(filepath.Join(sharedModels, "tiny-llama-genai-fp16")); err == nil {
		realDir := filepath.Join(dir, "real")
		realPrefixed, realAd, _ := prefixedModel(t, prefixCases[3], genaiBase(t, ""), realDir)
		cases = append(cases,
			mergeCase{"real prefixed model", []string{realPrefixed}, append([]string{realPrefixed + " carries a prefix"}, why...)},
			mergeCase{"real base with a prefix adapter", []string{genaiBase(t, ""), "--adapter", realAd}, append([]string{realAd + " is a prefix adapter"}, why...)},
		)
	}
	out := filepath.Join(dir, "out", "merged.onnx")
	for _, test := range cases {
		stdout, errOut, code := cli(t, append([]string{"merge", "-o", out}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, 1, test.parts...)
		if _, err := os.Stat(filepath.Dir(out)); err == nil {
			t.Errorf("%s: left %q behind", test.reason, listDir(t, filepath.Dir(out)))
		}
	}
}
