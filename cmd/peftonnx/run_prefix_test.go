package main

import (
	"path/filepath"
	"testing"
)

// TestRunPrefixAdapter runs base models with a prefix adapter applied in
// memory: the outputs are those of the prefixed model and of the model
// that apply writes, and run computes them as the runtime does.
func TestRunPrefixAdapter(t *testing.T) {
	needORT(t)
	for _, c := range []prefixCase{prefixCases[0], prefixCases[1], prefixCases[3]} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			base := c.base(t, dir)
			prefixed, ad, _ := prefixedModel(t, c, base, dir)
			applied := filepath.Join(dir, "applied.onnx")
			runOK(t, "apply", base, "--adapter", ad, "-o", applied)
			feeds := c.feeds(t)
			inputs := writeFeeds(t, dir, feeds)
			want := runModel(t, prefixed, feeds)

			run := func(name string, args ...string) map[string][]float32 {
				t.Helper()
				outDir := filepath.Join(dir, "out-"+name)
				runOK(t, append(append([]string{"run", "--output-dir", outDir, "--threads", "1"}, args...), inputs...)...)
				return readOutputs(t, outDir, want)
			}
			withAdapter := run("adapter", base, "--adapter", ad)
			wantSame(t, "run BASE --adapter vs the prefixed model", withAdapter, want, 1e-6)
			wantSame(t, "run BASE --adapter vs run on the applied model", withAdapter, run("applied", applied), 0)
			wantSame(t, "run on the prefixed model", run("prefixed", prefixed), want, 1e-6)
		})
	}
}

// TestRunPrefixAdapterLargeModel takes the path for models over 2 GiB with
// a prefix adapter, and checks that the temporary file is removed.
func TestRunPrefixAdapterLargeModel(t *testing.T) {
	needORT(t)
	c := prefixCases[3]
	dir := t.TempDir()
	base := c.base(t, dir)
	prefixed, ad, _ := prefixedModel(t, c, base, dir)
	feeds := c.feeds(t)
	inputs := writeFeeds(t, dir, feeds)

	defer func(v int64) { spillAbove = v }(spillAbove)
	spillAbove = 1 // as if the adapted model were over 2 GiB
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	outDir := filepath.Join(dir, "out")
	runOK(t, append([]string{"run", base, "--adapter", ad, "--output-dir", outDir, "--threads", "1"}, inputs...)...)
	want := runModel(t, prefixed, feeds)
	wantSame(t, "run --adapter through a file", readOutputs(t, outDir, want), want, 1e-6)
	if left := listDir(t, tmp); len(left) != 0 {
		t.Errorf("left %q in the temporary folder", left)
	}
}

// TestRunPrefixAdapterErrors checks the errors of run --adapter with
// prefixes; a failed run writes no output.
func TestRunPrefixAdapterErrors(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	base := builderBase(t, dir)
	noCache := savedLlama(t, dir, "nocache.onnx", true)
	prefixed, ad, _ := prefixedModel(t, prefixCases[0], base, dir)
	asInputs := filepath.Join(dir, "inputs.onnx")
	runOK(t, "inject", base, "-o", asInputs, "--target", ".*q_proj", "--as-inputs")
	lora := filepath.Join(dir, "lora.onnx")
	runOK(t, "inject", base, "-o", lora, "--target", ".*q_proj")
	loraAd := filepath.Join(dir, "lora-adapter")
	runOK(t, "export-adapter", lora, "--out", loraAd)
	inputs := writeFeeds(t, dir, prefixCases[0].feeds(t))
	outDir := filepath.Join(dir, "out")

	for _, test := range []struct {
		reason string
		args   []string
		parts  []string
	}{
		{"prefix adapter on a prefixed model", []string{prefixed, "--adapter", ad}, []string{prefixed, "already carries a prefix"}},
		{"prefix adapter on LoRA inputs", []string{asInputs, "--adapter", ad}, []string{asInputs, "carries LoRA branches", "not both"}},
		{"LoRA adapter on a prefixed model", []string{prefixed, "--adapter", loraAd}, []string{prefixed, "carries a prefix", loraAd, "not both"}},
		{"prefix adapter on a model without past", []string{noCache, "--adapter", ad}, []string{"applying " + ad + " to " + noCache, "no past key/value inputs"}},
	} {
		stdout, errOut, code := cli(t, append(append([]string{"run", "--output-dir", outDir}, test.args...), inputs...)...)
		wantError(t, test.reason, stdout, errOut, code, 1, test.parts...)
		if files := listDir(t, outDir); len(files) != 0 {
			t.Errorf("%s: left %q in the output dir", test.reason, files)
		}
	}
}
