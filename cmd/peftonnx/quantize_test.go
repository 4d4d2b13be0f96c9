package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// savedModel writes m to dir/name and returns the path.
func savedModel(t *testing.T, m *graph.Model, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := m.Save(p, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestQuantizeGolden quantizes the tiny builder models and compares what
// quantize prints with testdata/quantize/*; the input stays as it was and
// the output holds one MatMulNBits per quantized layer.
func TestQuantizeGolden(t *testing.T) {
	dir, outDir := t.TempDir(), t.TempDir()
	llama, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	gpt2c := models.GPT2Tiny()
	gpt2c.Gemm = true
	gpt2, err := models.GPT2(gpt2c)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{"llama": savedModel(t, llama, dir, "llama.onnx"), "gpt2": savedModel(t, gpt2, dir, "gpt2.onnx")}
	for _, test := range []struct {
		golden, model string
		args          []string
		nbits         int
	}{
		{"llama-default.txt", "llama", nil, 15},
		{"llama-symmetric-targets.txt", "llama", []string{"--symmetric", "--block-size", "16", "--target", ".*self_attn.*", "--target", "lm_head"}, 9},
		{"llama-8bit.txt", "llama", []string{"--bits", "8", "--accuracy-level", "4"}, 15},
		{"gpt2-gemm.txt", "gpt2", []string{"--block-size", "16"}, 9},
		{"llama-embeddings.txt", "llama", []string{"--block-size", "16", "--embeddings"}, 15},
	} {
		in := paths[test.model]
		before := fileSums(t, dir)
		out := filepath.Join(outDir, strings.TrimSuffix(test.golden, ".txt"), "model.onnx")
		stdout := runOK(t, append([]string{"quantize", in, "-o", out}, test.args...)...)
		golden(t, filepath.Join("quantize", test.golden), tempPaths(stdout, outDir))
		if after := fileSums(t, dir); !reflect.DeepEqual(after, before) {
			t.Errorf("%s: quantize changed the input folder %s", test.golden, dir)
		}
		m, err := graph.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if got := countMatMulNBits(m); got != test.nbits {
			t.Errorf("%s: %s has %d MatMulNBits nodes, want %d", test.golden, out, got, test.nbits)
		}
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", test.golden, err)
		}
		m.Close()
	}
}

// TestQuantizeRuns quantizes a LLaMA builder model and the real
// onnxruntime-genai export with the command, runs them in ONNX Runtime,
// and holds their logits to the float model's within a documented bound;
// the builder model's logits must also equal the float64 reference
// computed with the dequantized weights.
func TestQuantizeRuns(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	cfg := models.LlamaMini()
	cfg.InitStd = 0.1 // attention far from uniform, so errors show
	mini, err := models.Llama(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		name  string
		model string // a path, or "" for the builder model
		args  []string
		fp16  bool
		// bound on ‖Δlogits‖/‖logits‖ against the float model; the
		// measured figures are in the report of the change that set them.
		bound float64
	}{
		{"llama-mini asymmetric", "", nil, false, 0.35},
		{"llama-mini symmetric", "", []string{"--symmetric"}, false, 0.35},
		{"llama-mini 8 bits", "", []string{"--bits", "8"}, false, 0.03},
		{"genai fp16", sharedModel(t, "tiny-llama-genai-fp16"), nil, true, 0.1},
	} {
		in := test.model
		if in == "" {
			in = savedModel(t, mini, dir, "mini.onnx")
		}
		out := filepath.Join(dir, strings.ReplaceAll(test.name, " ", "-")+".onnx")
		runOK(t, append([]string{"quantize", in, "-o", out}, test.args...)...)
		kv, hd := cfg.KVHeads, cfg.HeadDim()
		if test.fp16 {
			kv, hd = 1, 16
		}
		feeds := decoderFeeds(t, kv, hd, 0, 6, test.fp16)
		want := runModel(t, in, feeds)["logits"]
		got := runModel(t, out, feeds)["logits"]
		e := relFrobenius32(got, want)
		t.Logf("%s: ‖Δlogits‖/‖logits‖ = %.4g", test.name, e)
		if !(e > 0 && e <= test.bound) {
			t.Errorf("%s: logits move by %.4g from the float model's, want within (0, %g]", test.name, e, test.bound)
		}
		if test.model != "" {
			continue
		}
		ref := dequantizedReference(t, cfg, mini, out, feeds["input_ids"].Int64())
		var d, s float64
		for i, r := range ref {
			d = max(d, math.Abs(float64(got[i])-r))
			s = max(s, math.Abs(r))
		}
		if d/s > 1e-4 {
			t.Errorf("%s: ORT's logits differ from the reference with dequantized weights by %.3g relative, want ≤ 1e-4", test.name, d/s)
		}
	}
}

// dequantizedReference computes the LLaMA reference logits for ids with
// the float model's weights replaced by the dequantized weights of the
// quantized model at path.
func dequantizedReference(t *testing.T, cfg models.LlamaConfig, float *graph.Model, path string, ids []int64) []float64 {
	t.Helper()
	w, err := models.WeightsOf(float)
	if err != nil {
		t.Fatal(err)
	}
	linears, err := rewrite.FindLinears(float)
	if err != nil {
		t.Fatal(err)
	}
	q, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, l := range linears {
		node := q.NodeByName(quant.BuilderNodeName(l.NodeName, 4))
		if node == nil {
			node = q.NodeByName(quant.BuilderNodeName(l.NodeName, 8))
		}
		qw, err := quant.ReadNode(q, node)
		if err != nil {
			t.Fatal(err)
		}
		deq, err := qw.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		w[l.Weight] = models.Tensor{Shape: w[l.Weight].Shape, Data: deq}
	}
	in := models.DecoderInputs{Batch: 1, Seq: len(ids), InputIDs: ids}
	for i := range ids {
		in.AttentionMask = append(in.AttentionMask, 1)
		in.PositionIDs = append(in.PositionIDs, int64(i))
	}
	out, err := models.LlamaReference(cfg, w, in)
	if err != nil {
		t.Fatal(err)
	}
	return out.Logits
}

// relFrobenius32 returns ‖got − want‖ / ‖want‖.
func relFrobenius32(got, want []float32) float64 {
	var d, s float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		s += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / s)
}

// TestQuantizeErrors checks the one-line errors for bad flags, files and
// models; none leaves an output behind.
func TestQuantizeErrors(t *testing.T) {
	dir := t.TempDir()
	llama := savedLlama(t, dir, "llama.onnx", false)
	missing := filepath.Join(dir, "missing.onnx")
	out := filepath.Join(dir, "out", "q.onnx")
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", llama, "-o", adapted, "--target", ".*q_proj")
	quantized := filepath.Join(dir, "quantized.onnx")
	runOK(t, "quantize", llama, "-o", quantized)
	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"missing file", []string{missing, "-o", out}, 1, []string{missing, "no such file"}},
		{"no linear matched", []string{llama, "-o", out, "--target", "q_proj"}, 1, []string{llama, `targets ["q_proj"] matched no linear layer`, "model.layers.0.self_attn.q_proj"}},
		{"bad regex", []string{llama, "-o", out, "--target", "(("}, 1, []string{`target "(("`}},
		{"no linear layer", []string{quantized, "-o", out}, 1, []string{quantized, "has no linear layer to quantize"}},
		{"LoRA model", []string{adapted, "-o", out}, 1, []string{adapted, "carries LoRA branches", "merge them first"}},
		{"3 bits", []string{llama, "-o", out, "--bits", "3"}, 2, []string{"--bits must be 2, 4 or 8", "got 3"}},
		{"block size 24", []string{llama, "-o", out, "--block-size", "24"}, 2, []string{"--block-size must be a power of two of at least 16, got 24"}},
		{"block size 8", []string{llama, "-o", out, "--block-size", "8"}, 2, []string{"got 8"}},
		{"accuracy level", []string{llama, "-o", out, "--accuracy-level", "5"}, 2, []string{"--accuracy-level must be 0 to 4, got 5"}},
		{"no output", []string{llama}, 2, []string{"-o OUT is required"}},
		{"no model", []string{"-o", out}, 2, []string{"want one MODEL, got 0"}},
		{"output is the input", []string{llama, "-o", llama}, 1, []string{"would overwrite the input", llama}},
		{"output is a folder", []string{llama, "-o", dir}, 1, []string{"is a directory"}},
	} {
		stdout, stderr, code := cli(t, append([]string{"quantize"}, test.args...)...)
		wantError(t, test.reason, stdout, stderr, code, test.code, test.parts...)
		if _, err := os.Stat(filepath.Dir(out)); err == nil {
			t.Errorf("%s: left %s behind", test.reason, filepath.Dir(out))
		}
	}
}

// TestQuantizeDuplicateConstants quantizes the real GPT-2 export of
// PyTorch 1.6, whose graph defines some Constant outputs twice (which
// ONNX Runtime runs): quantize reports only the problems it would make,
// and the quantized model runs, near the float one.
func TestQuantizeDuplicateConstants(t *testing.T) {
	needORT(t)
	in := sharedModel(t, "gpt2-past-torch16")
	out := filepath.Join(t.TempDir(), "q.onnx")
	runOK(t, "quantize", in, "-o", out, "--target", `.*\.c_proj`, "--bits", "8")
	ids, err := ortrt.NewInt64([]int64{1, 1}, []int64{7})
	if err != nil {
		t.Fatal(err)
	}
	feeds := map[string]*ortrt.Tensor{"input_ids": ids}
	for i := range 12 {
		past := make([]float32, 2*2*3*2)
		for j := range past {
			past[j] = float32((i+j)%5)/5 - 0.4
		}
		if feeds[fmt.Sprintf("past_%d", i)], err = ortrt.NewFloat32([]int64{2, 1, 2, 3, 2}, past); err != nil {
			t.Fatal(err)
		}
	}
	want, got := runModel(t, in, feeds)["last_state"], runModel(t, out, feeds)["last_state"]
	e := relFrobenius32(got, want)
	t.Logf("8-bit c_proj: ‖Δlast_state‖/‖last_state‖ = %.4g", e)
	if !(e > 0 && e <= 0.05) {
		t.Errorf("the quantized model's last_state moves by %.4g from the float model's, want within (0, 0.05]", e)
	}
}
