package main

import (
	"os"
	"path/filepath"
	"testing"
)

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
	runOK(t, "prefix", lora, "-o", mixed, "--tokens", "2")
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
