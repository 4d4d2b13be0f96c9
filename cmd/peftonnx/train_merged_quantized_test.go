package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// TestTrainMergedQuantized checks train --merged on quantized models: an
// int4 (MatMulNBits) model, and a QDQ one, are refused in one line before
// the first step, with nothing written (the merge used to fail only after
// training, with the adapter already written); with merge's --dequantize
// or --requantize, train --merged writes what "peftonnx merge" does: float
// layers that compute the trained adapter applied to the int4 base, or
// the base's int4 layers again.
func TestTrainMergedQuantized(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	q := at("q.onnx")
	runOK(t, "quantize", savedLlama(t, dir, "base.onnx", true), "-o", q, "--block-size", "16")
	a := at("a.onnx")
	runOK(t, "inject", q, "-o", a, "--target", ".*_proj", "--target", "lm_head", "--r", "4", "--alpha", "8")
	data := trainCountingData(t, dir, "train.jsonl", 8, 8, 32)
	train := func(out, merged string, extra ...string) (string, string, int) {
		args := append([]string{"train", a, "--data", data, "--out", at(out), "--merged", at(merged), "--log-json", at(out + ".jsonl"),
			"--steps", "2", "--batch", "4", "--lr", "5e-2", "--threads", "1"}, extra...)
		return cli(t, args...)
	}
	nothingWritten := func(what, out, merged string) {
		t.Helper()
		for _, p := range []string{at(out), at(out + ".jsonl"), at(merged), at(merged + ".data")} {
			if trainFileExists(p) {
				t.Errorf("%s: %s was written", what, p)
			}
		}
	}

	stdout, stderr, code := train("refused", "refused.onnx")
	wantError(t, "train --merged on int4", stdout, stderr, code, 1, "train: --merged: "+a+" cannot be merged", "is int4 (MatMulNBits)", "--dequantize", "--requantize")
	nothingWritten("train --merged on int4", "refused", "refused.onnx")
	stdout, stderr, code = train("both", "both.onnx", "--dequantize", "--requantize")
	wantError(t, "--dequantize with --requantize", stdout, stderr, code, 2, "exclude each other")
	nothingWritten("--dequantize with --requantize", "both", "both.onnx")
	stdout, stderr, code = cli(t, "train", a, "--data", data, "--out", at("alone"), "--requantize")
	wantError(t, "--requantize without --merged", stdout, stderr, code, 2, "add --merged")

	out := runOK(t, append([]string{"train", a, "--data", data, "--out", at("float"), "--merged", at("float.onnx"),
		"--steps", "2", "--batch", "4", "--lr", "5e-2", "--threads", "1"}, "--dequantize")...)
	for _, want := range []string{"merged model: " + at("float.onnx"), "15 int4 layers became float MatMuls"} {
		if !strings.Contains(out, want) {
			t.Errorf("train --merged --dequantize does not say %q:\n%s", want, out)
		}
	}
	if n := countOp(loadModel(t, at("float.onnx")).Graph().GetNode(), "MatMulNBits"); n != 0 {
		t.Errorf("train --merged --dequantize left %d MatMulNBits nodes", n)
	}
	applied := at("applied.onnx")
	runOK(t, "apply", q, "--adapter", at("float"), "-o", applied)
	feeds := sixTokenFeeds(t, []int64{3, 1, 4, 1, 5, 9})
	want := runModel(t, applied, feeds)
	if d, err := maxDiff(want, runModel(t, q, feeds)); err != nil || d < 1e-3 {
		t.Fatalf("the trained adapter changes the outputs by %.3g (%v): the test would prove nothing", d, err)
	}
	wantSame(t, "train --merged --dequantize vs the trained adapter applied", runModel(t, at("float.onnx"), feeds), want, 1e-4)

	if stdout, stderr, code = train("int4", "int4.onnx", "--requantize"); code != 0 || stderr != "" || !strings.Contains(stdout, "requantized 15 int4 layers") {
		t.Errorf("train --merged --requantize: status %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	if got, base := countOp(loadModel(t, at("int4.onnx")).Graph().GetNode(), "MatMulNBits"), countOp(loadModel(t, q).Graph().GetNode(), "MatMulNBits"); got != base {
		t.Errorf("train --merged --requantize: %d MatMulNBits nodes, the int4 base %d", got, base)
	}

	qdq := saveBuilt(t, dir, "qdq.onnx", func() (*graph.Model, error) { return models.QDQLinear(false, 1) })
	qa := at("qdq-adapted.onnx")
	runOK(t, "inject", qdq, "-o", qa, "--target", "fc")
	var lines []string
	for i := range 8 {
		x, y := make([]string, 8), make([]string, 6)
		for j := range x {
			x[j] = fmt.Sprint(float64((i+j)%5-2) / 4)
		}
		for j := range y {
			y[j] = fmt.Sprint(float64((i*j)%3-1) / 2)
		}
		lines = append(lines, fmt.Sprintf(`{"input_ids":[0],"x":[%s],"target":[%s]}`, strings.Join(x, ","), strings.Join(y, ",")))
	}
	reg := trainWriteLines(t, dir, "reg.jsonl", lines...)
	qdqTrain := func(out, merged string, extra ...string) (string, string, int) {
		return cli(t, append([]string{"train", qa, "--data", reg, "--out", at(out), "--merged", at(merged), "--log-json", at(out + ".jsonl"),
			"--steps", "2", "--batch", "4", "--lr", "1e-1", "--threads", "1"}, extra...)...)
	}
	stdout, stderr, code = qdqTrain("qdq", "qdq-merged.onnx")
	wantError(t, "train --merged on QDQ", stdout, stderr, code, 1, "train: --merged: "+qa+" cannot be merged", "cannot be exact in int8", "--dequantize")
	nothingWritten("train --merged on QDQ", "qdq", "qdq-merged.onnx")
	if _, stderr, code = qdqTrain("qdq-float", "qdq-float.onnx", "--dequantize"); code != 0 || stderr != "" {
		t.Fatalf("train --merged --dequantize on QDQ: status %d, stderr %q", code, stderr)
	}
	qApplied := at("qdq-applied.onnx")
	runOK(t, "apply", qdq, "--adapter", at("qdq-float"), "-o", qApplied)
	x, err := ortrt.NewFloat32([]int64{2, 8}, []float32{0.5, -0.25, 0.75, 0, -0.5, 0.25, 1, -1, 0.1, 0.2, -0.3, 0.4, -0.6, 0.7, 0.8, -0.9})
	if err != nil {
		t.Fatal(err)
	}
	xFeeds := map[string]*ortrt.Tensor{"x": x}
	qWant := runModel(t, qApplied, xFeeds)
	if d, err := maxDiff(qWant, runModel(t, qdq, xFeeds)); err != nil || d < 1e-3 {
		t.Fatalf("the adapter trained on QDQ changes the outputs by %.3g (%v): the test would prove nothing", d, err)
	}
	wantSame(t, "train --merged --dequantize on QDQ vs the trained adapter applied", runModel(t, at("qdq-float.onnx"), xFeeds), qWant, 1e-4)
	if n := countOp(loadModel(t, at("qdq-float.onnx")).Graph().GetNode(), "DequantizeLinear"); n != 1 {
		t.Errorf("train --merged --dequantize on QDQ: %d DequantizeLinear nodes, want the activation's 1 only", n)
	}
}
