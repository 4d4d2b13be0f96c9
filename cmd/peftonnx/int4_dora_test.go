package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestInt4DoRAWorkflow runs DoRA on an int4 model through the commands:
// quantize, inject --dora on every int4 layer (the fresh model computes
// the base's outputs and its packed tensors are the base's), train a few
// steps (the loss falls), apply the trained adapter to the int4 base,
// merge --dequantize (the adapted outputs, float layers) and unmerge back,
// merge --adapter --dequantize alike, merge --requantize (int4 again with
// the base's 15 MatMulNBits, its rounding error printed), and unmerge of
// the requantized model refused in one line.
func TestInt4DoRAWorkflow(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	base := savedLlama(t, dir, "base.onnx", true)
	q := at("q.onnx")
	runOK(t, "quantize", base, "-o", q, "--block-size", "16")
	feeds := sixTokenFeeds(t, []int64{3, 1, 4, 1, 5, 9})
	baseOut := runModel(t, q, feeds)

	a := at("a.onnx")
	runOK(t, "inject", q, "-o", a, "--target", ".*_proj", "--target", "lm_head", "--r", "4", "--alpha", "8", "--dora")
	wantSame(t, "fresh DoRA on int4 vs the int4 base", runModel(t, a, feeds), baseOut, 1e-5)
	qm, am := loadModel(t, q), loadModel(t, a)
	for _, init := range qm.Graph().Initializer {
		want, _ := qm.TensorBytes(init)
		got, err := am.TensorBytes(am.Initializer(init.Name))
		if err != nil || string(got) != string(want) {
			t.Errorf("inject changed or lost %s (%v)", init.Name, err)
		}
	}
	if got := countOp(am.Graph().GetNode(), "MatMulNBits"); got != 15 {
		t.Errorf("%d MatMulNBits nodes in the adapted model, want the 15 layers alone (each computes its norm's Aᵀ·W too)", got)
	}

	data := trainCountingData(t, dir, "train.jsonl", 8, 8, 32)
	ad := at("adapter")
	runOK(t, "train", a, "--data", data, "--out", ad, "--steps", "10", "--batch", "4", "--lr", "5e-2",
		"--schedule", "constant", "--log-json", at("log.jsonl"), "--threads", "1")
	recs := trainLogLines(t, at("log.jsonl"))
	if first, last := recs[0]["loss"], recs[9]["loss"]; !(last < first) {
		t.Errorf("training DoRA on int4: loss %.4g at step 1, %.4g at step 10", first, last)
	}
	trained := at("trained.onnx")
	runOK(t, "apply", q, "--adapter", ad, "-o", trained)
	want := runModel(t, trained, feeds)
	if d, err := maxDiff(want, baseOut); err != nil || d < 1e-3 {
		t.Fatalf("the trained adapter changes the outputs by %.3g (%v): the test would prove nothing", d, err)
	}

	f := at("f.onnx")
	if out := runOK(t, "merge", trained, "--dequantize", "-o", f); !strings.Contains(out, "15 int4 layers became float MatMuls") {
		t.Errorf("merge --dequantize does not report the float layers:\n%s", out)
	}
	wantSame(t, "merge --dequantize vs trained", runModel(t, f, feeds), want, 1e-4)
	if n := countOp(loadModel(t, f).Graph().GetNode(), "MatMulNBits"); n != 0 {
		t.Errorf("%d MatMulNBits nodes left after merge --dequantize", n)
	}
	runOK(t, "unmerge", f, "--adapter", ad, "-o", at("u.onnx"))
	wantSame(t, "unmerge of merge --dequantize vs trained", runModel(t, at("u.onnx"), feeds), want, 1e-4)
	fa := at("fa.onnx")
	runOK(t, "merge", q, "--adapter", ad, "--dequantize", "-o", fa)
	wantSame(t, "merge --adapter --dequantize vs trained", runModel(t, fa, feeds), want, 1e-4)

	r := at("r.onnx")
	out := runOK(t, "merge", trained, "--requantize", "-o", r)
	if !strings.Contains(out, "requantized 15 int4 layers") || !strings.Contains(out, "requantized: error") {
		t.Errorf("merge --requantize does not report its rounding:\n%s", out)
	}
	if n := countOp(loadModel(t, r).Graph().GetNode(), "MatMulNBits"); n != 15 {
		t.Errorf("requantized model has %d MatMulNBits nodes, want the base's 15", n)
	}
	d, err := maxDiff(runModel(t, r, feeds), want)
	t.Logf("merge --requantize: outputs off the trained model's by %.3g (%v)", d, err)
	stdout, errOut, code := cli(t, "unmerge", r, "--adapter", ad, "-o", at("bad.onnx"))
	wantError(t, "unmerge of an int4 DoRA merge", stdout, errOut, code, 1, "is int4 (MatMulNBits), and nothing merged into int4 can be taken out", "merge --dequantize")
}
