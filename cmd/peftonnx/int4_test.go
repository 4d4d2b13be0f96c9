package main

import (
	"path/filepath"
	"strings"
	"testing"

	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// TestInt4Workflow runs the commands on an int4 model as a user would:
// inspect lists the MatMulNBits layers as int4 linear layers, inject puts
// LoRA on them, merge makes the adapted layers float (exactly the adapted
// model's outputs) or, with --requantize, int4 again with the base's
// nodes and its rounding error printed, and an exported adapter applied
// to the int4 base computes what the adapted model does.
func TestInt4Workflow(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	base := savedLlama(t, dir, "base.onnx", true)
	q := filepath.Join(dir, "q.onnx")
	runOK(t, "quantize", base, "-o", q, "--block-size", "16")
	out := runOK(t, "inspect", q, "--target", ".*_proj", "--target", "lm_head")
	for _, want := range []string{"model.layers.0.self_attn.q_proj  /model/layers.0/self_attn/q_proj/MatMul_Q4  MatMulNBits", "int4", "adapt 15 of 16 modules"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect does not say %q:\n%s", want, out)
		}
	}
	a := filepath.Join(dir, "a.onnx")
	runOK(t, "inject", q, "-o", a, "--target", ".*_proj", "--target", "lm_head", "--r", "4")
	setRandomB(t, a, a, 5)
	ids := []int64{3, 1, 4, 1, 5, 9}
	feeds := sixTokenFeeds(t, ids)
	want := runModel(t, a, feeds)

	if _, stderr, code := cli(t, "merge", a, "-o", filepath.Join(dir, "refused.onnx")); code == 0 || !strings.Contains(stderr, "--requantize") {
		t.Errorf("merge into int4 without --dequantize or --requantize: status %d, %q", code, stderr)
	}
	f := filepath.Join(dir, "f.onnx")
	if out := runOK(t, "merge", a, "--dequantize", "-o", f); !strings.Contains(out, "15 int4 layers became float MatMuls") {
		t.Errorf("merge does not report the float layers:\n%s", out)
	}
	wantSame(t, "dequantized merge against the adapted model", runModel(t, f, feeds), want, 1e-4)

	r := filepath.Join(dir, "r.onnx")
	out = runOK(t, "merge", a, "--requantize", "-o", r)
	if !strings.Contains(out, "requantized 15 int4 layers") || !strings.Contains(out, "164 nodes") {
		t.Errorf("merge --requantize:\n%s", out)
	}
	rq := loadModel(t, r)
	if got, base := countOp(rq.Graph().GetNode(), "MatMulNBits"), countOp(loadModel(t, q).Graph().GetNode(), "MatMulNBits"); got != base || got != 15 {
		t.Errorf("requantized model has %d MatMulNBits nodes, the base %d", got, base)
	}
	// Rounding moves the outputs (B is far from small here: the rounding
	// error is the point, rewrite's tests hold its size).
	d, err := maxDiff(runModel(t, r, feeds), want)
	effect, err2 := maxDiff(runModel(t, q, feeds), want)
	if err != nil || err2 != nil || d == 0 {
		t.Errorf("requantized merge differs from the adapted model by %g (%v), the base by %g (%v)", d, err, effect, err2)
	}
	t.Logf("requantized merge: outputs off by %.3g; the adapter moves them by %.3g", d, effect)

	ad := filepath.Join(dir, "ad")
	runOK(t, "export-adapter", a, "--out", ad)
	ap := filepath.Join(dir, "ap.onnx")
	runOK(t, "apply", q, "--adapter", ad, "-o", ap)
	wantSame(t, "adapter applied to the int4 base", runModel(t, ap, feeds), want, 1e-5)
}

// countOp counts the nodes of type op.
func countOp[N interface{ GetOpType() string }](nodes []N, op string) int {
	c := 0
	for _, n := range nodes {
		if n.GetOpType() == op {
			c++
		}
	}
	return c
}

// sixTokenFeeds are the inputs of one six-token sequence, ids, for the
// LLaMA test models: ids, a full attention mask and positions 0 to 5.
func sixTokenFeeds(t *testing.T, ids []int64) map[string]*ortrt.Tensor {
	t.Helper()
	feeds := map[string]*ortrt.Tensor{}
	for name, v := range map[string][]int64{"input_ids": ids, "attention_mask": {1, 1, 1, 1, 1, 1}, "position_ids": {0, 1, 2, 3, 4, 5}} {
		x, err := ortrt.NewInt64([]int64{1, 6}, v)
		if err != nil {
			t.Fatal(err)
		}
		feeds[name] = x
	}
	return feeds
}
