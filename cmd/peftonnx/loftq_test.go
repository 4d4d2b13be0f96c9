package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// outputsDistance returns ‖got − want‖ over all of want's outputs, +Inf
// where a value is NaN.
func outputsDistance(t *testing.T, got, want map[string][]float32) float64 {
	t.Helper()
	s := 0.0
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			t.Fatalf("output %q: %d values, want %d", name, len(g), len(w))
		}
		for i := range w {
			d := float64(g[i]) - float64(w[i])
			if math.IsNaN(d) {
				return math.Inf(1)
			}
			s += d * d
		}
	}
	return math.Sqrt(s)
}

// TestOutputsDistanceSeesNaN: a NaN, on either side or both, is no match.
func TestOutputsDistanceSeesNaN(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range [][2][]float32{{{1, nan}, {1, 2}}, {{1, 2}, {1, nan}}, {{nan}, {nan}}} {
		if d := outputsDistance(t, map[string][]float32{"y": c[0]}, map[string][]float32{"y": c[1]}); !math.IsInf(d, 1) {
			t.Errorf("outputsDistance(%v, %v) = %v, want +Inf", c[0], c[1], d)
		}
	}
}

// TestLoftQCLI runs inject --init loftq on the tiny Llama as a user would:
// with --bits/--block-size the adapted layers become MatMulNBits, and in
// ONNX Runtime the fresh model is closer to the float model than
// "quantize" with the same bits and blocks is (and so is the float-base
// LoftQ against "quantize" in its default blocks). train runs on it and
// its loss falls. After "training" (random B), merge --dequantize computes what the adapted model does,
// and unmerge with the exported adapter gives that model back. An int4
// model and LoftQ flags without --init loftq are refused, with nothing
// written.
func TestLoftQCLI(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	base := savedLlama(t, dir, "base.onnx", true)
	feeds := sixTokenFeeds(t, []int64{3, 1, 4, 1, 5, 9})
	want := runModel(t, base, feeds)

	runOK(t, "quantize", base, "-o", at("rtn.onnx"), "--bits", "4", "--block-size", "16", "--target", ".*_proj")
	out := runOK(t, "inject", base, "-o", at("loftq.onnx"), "--target", ".*_proj", "--r", "4", "--alpha", "8",
		"--init", "loftq", "--bits", "4", "--block-size", "16", "--loftq-iter", "4")
	if !strings.Contains(out, "LoRA r=4 on 14 layers") || !strings.Contains(out, "LoftQ (4 bits, blocks of 16, 4 iterations, MatMulNBits base): relative error of base + s·A·B against the float weights 0.") {
		t.Errorf("inject --init loftq says:\n%s", out)
	}
	t.Logf("inject --init loftq:\n%s", out)
	if got := countOp(loadModel(t, at("loftq.onnx")).Graph().GetNode(), "MatMulNBits"); got != 14 {
		t.Errorf("LoftQ model has %d MatMulNBits nodes, want the 14 adapted layers", got)
	}
	rtn := outputsDistance(t, runModel(t, at("rtn.onnx"), feeds), want)
	loftq := outputsDistance(t, runModel(t, at("loftq.onnx"), feeds), want)
	runOK(t, "inject", base, "-o", at("loftq-float.onnx"), "--target", ".*_proj", "--r", "4", "--alpha", "8", "--init", "loftq")
	floatBase := outputsDistance(t, runModel(t, at("loftq-float.onnx"), feeds), want)
	runOK(t, "quantize", base, "-o", at("rtn32.onnx"), "--bits", "4", "--block-size", "32", "--target", ".*_proj")
	rtn32 := outputsDistance(t, runModel(t, at("rtn32.onnx"), feeds), want)
	t.Logf("outputs' distance from the float model: blocks of 16: RTN %.4g, LoftQ (4 iterations) %.4g; blocks of 32: RTN %.4g, LoftQ float base (1 iteration) %.4g", rtn, loftq, rtn32, floatBase)
	if !(loftq < rtn) {
		t.Errorf("LoftQ int4 is %.4g from the float model, RTN int4 %.4g: LoftQ should be closer", loftq, rtn)
	}
	if !(floatBase < rtn32) {
		t.Errorf("LoftQ with a float base is %.4g from the float model, RTN int4 in the same blocks %.4g: LoftQ should be closer", floatBase, rtn32)
	}

	// train runs on the int4 LoftQ model, and its loss falls.
	data := trainCountingData(t, dir, "train.jsonl", 8, 8, 32)
	logPath := at("log.jsonl")
	runOK(t, "train", at("loftq.onnx"), "--data", data, "--out", at("trained-adapter"), "--steps", "12", "--batch", "4",
		"--lr", "2e-2", "--schedule", "constant", "--log-json", logPath, "--threads", "1")
	recs := trainLogLines(t, logPath)
	if first, last := recs[0]["loss"], recs[11]["loss"]; !(last < first) {
		t.Errorf("training the LoftQ model: loss %.4g at step 1, %.4g at step 12", first, last)
	}

	trained := at("trained.onnx")
	setRandomB(t, at("loftq.onnx"), trained, 7)
	adapted := runModel(t, trained, feeds)
	merged := at("merged.onnx")
	runOK(t, "merge", trained, "--dequantize", "-o", merged)
	wantSame(t, "merge --dequantize vs adapted", runModel(t, merged, feeds), adapted, 1e-4)
	ad := at("adapter")
	runOK(t, "export-adapter", trained, "--out", ad)
	runOK(t, "unmerge", merged, "--adapter", ad, "-o", at("unmerged.onnx"))
	wantSame(t, "unmerged vs adapted", runModel(t, at("unmerged.onnx"), feeds), adapted, 1e-4)

	bad := at("bad.onnx")
	stdout, errOut, code := cli(t, "inject", at("rtn.onnx"), "-o", bad, "--target", ".*_proj", "--init", "loftq")
	wantError(t, "LoftQ on an int4 model", stdout, errOut, code, 1, "init loftq", "already packed in a MatMulNBits layer", "give the float model")
	stdout, errOut, code = cli(t, "inject", base, "-o", bad, "--target", ".*_proj", "--init", "pissa", "--bits", "4")
	wantError(t, "--bits without loftq", stdout, errOut, code, 2, "--bits, --block-size and --loftq-iter belong to --init loftq")
	stdout, errOut, code = cli(t, "inject", base, "-o", bad, "--target", ".*_proj", "--init", "loftq", "--loftq-iter", "0")
	wantError(t, "--loftq-iter 0", stdout, errOut, code, 2, "--loftq-iter must be at least 1")
	if _, err := os.Stat(bad); err == nil {
		t.Errorf("a refused inject left %s behind", bad)
	}
}
