package models

import (
	"fmt"
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/quantize"
)

// builderTiny is the smallest LLaMA that ONNX Runtime's CPU
// GroupQueryAttention rotates: head_dim 16 (a multiple of 16), 4 heads
// over 2 KV heads.
func builderTiny() LlamaConfig {
	c := LlamaTiny()
	c.Hidden, c.Intermediate, c.MaxPositions = 64, 48, 32
	c.Producer = ModelBuilder
	c.InitStd = testStd
	return c
}

// builderCases are the model-builder layouts the tests run.
var builderCases = []struct {
	name string
	edit func(*LlamaConfig)
	tol  tol
}{
	{"separate", func(c *LlamaConfig) {}, tol32},
	{"packed", func(c *LlamaConfig) { c.Builder.PackedQKV = true }, tol32},
	{"packed-interleaved", func(c *LlamaConfig) { c.Builder.PackedQKV, c.RopeInterleaved = true, true }, tol32},
	{"rotary-nodes", func(c *LlamaConfig) { c.Builder.RotaryNodes = true }, tol32},
	{"rotary-nodes-interleaved-mqa", func(c *LlamaConfig) { c.Builder.RotaryNodes, c.RopeInterleaved, c.KVHeads = true, true, 1 }, tol32},
	{"packed-mha-nocache", func(c *LlamaConfig) { c.Builder.PackedQKV, c.KVHeads, c.NoCache = true, 0, true }, tol32},
	{"fp16-packed", func(c *LlamaConfig) { c.Builder.PackedQKV, c.DType = true, dtype.Float16 }, tol{2e-2, 2e-2}},
	{"fp16-separate-interleaved", func(c *LlamaConfig) { c.DType, c.RopeInterleaved = dtype.Float16, true }, tol{2e-2, 2e-2}},
}

// TestModelBuilderMatchesTwinAndReference runs each model-builder layout
// on ONNX Runtime, its fused ops included, and holds it to its
// standard-op twin (Unfused) and to the float64 reference computed from
// the Optimum layout's weights: on a batch padded on the right (the
// layout GroupQueryAttention assumes), then a prefix run followed by a
// run with the past.
func TestModelBuilderMatchesTwinAndReference(t *testing.T) {
	for _, tc := range builderCases {
		t.Run(tc.name, func(t *testing.T) {
			c := builderTiny()
			tc.edit(&c)
			cw := c.withDefaults()
			fused, err := Llama(c)
			if err != nil {
				t.Fatal(err)
			}
			tc2 := c
			tc2.Builder.Unfused = true
			twin, err := Llama(tc2)
			if err != nil {
				t.Fatal(err)
			}
			oc := c
			oc.Producer = Optimum
			optimum, err := Llama(oc)
			if err != nil {
				t.Fatal(err)
			}
			w, err := WeightsOf(optimum)
			if err != nil {
				t.Fatal(err)
			}
			dec := decoder{
				elem: cw.DType, layers: c.Layers, kvHeads: cw.KVHeads, hdim: c.HeadDim(),
				vocab: c.VocabSize, cache: !c.NoCache, positions: c.Builder.RotaryNodes,
			}
			sf, st := session(t, fused), session(t, twin)

			const batch, seq = 2, 5
			mask := []int64{1, 1, 1, 1, 1, 1, 1, 1, 0, 0} // row 1 padded on the right
			pos := []int64{0, 1, 2, 3, 4, 0, 1, 2, 3, 4}
			in := DecoderInputs{Batch: batch, Seq: seq, InputIDs: tokens(batch*seq, c.VocabSize, 3), AttentionMask: mask, PositionIDs: pos}
			want, err := LlamaReference(oc, w, in)
			if err != nil {
				t.Fatal(err)
			}
			if dec.cache {
				in.Past = make([]KV, c.Layers)
			}
			got, gotTwin := dec.run(t, sf, in), dec.run(t, st, in)
			keepLogits := func(i int) bool { return mask[i/c.VocabSize] != 0 }
			keepCache := keepReal(mask, batch, cw.KVHeads, seq, c.HeadDim())
			compare(t, "logits vs twin", got.Logits, gotTwin.Logits, tc.tol, keepLogits)
			compare(t, "logits vs reference", got.Logits, want.Logits, tc.tol, keepLogits)
			for i := range got.Present {
				compare(t, fmt.Sprintf("present.%d.key vs twin", i), got.Present[i].Key, gotTwin.Present[i].Key, tc.tol, keepCache)
				compare(t, fmt.Sprintf("present.%d.value vs reference", i), got.Present[i].Value, want.Present[i].Value, tc.tol, keepCache)
				compare(t, fmt.Sprintf("present.%d.key vs reference", i), got.Present[i].Key, want.Present[i].Key, tc.tol, keepCache)
			}
			if !dec.cache {
				return
			}

			// One unpadded row (GroupQueryAttention takes a past with more
			// than one new token only for batch 1): 3 tokens, then 2 more
			// with the past.
			ids := in.InputIDs[:seq]
			whole := DecoderInputs{Batch: 1, Seq: seq, InputIDs: ids, AttentionMask: mask[:seq], PositionIDs: pos[:seq], Past: make([]KV, c.Layers)}
			all := dec.run(t, sf, whole)
			const pre = 3
			first := dec.run(t, sf, DecoderInputs{Batch: 1, Seq: pre, InputIDs: ids[:pre], AttentionMask: mask[:pre], PositionIDs: pos[:pre], Past: make([]KV, c.Layers)})
			next := DecoderInputs{Batch: 1, Seq: seq - pre, InputIDs: ids[pre:], AttentionMask: mask[:seq], PositionIDs: pos[pre:seq], Past: first.Present}
			step, stepTwin := dec.run(t, sf, next), dec.run(t, st, next)
			wantStep, err := LlamaReference(oc, w, next)
			if err != nil {
				t.Fatal(err)
			}
			v := c.VocabSize
			compare(t, "logits with past vs whole run", step.Logits, all.Logits[pre*v:], tc.tol, nil)
			compare(t, "logits with past vs twin", step.Logits, stepTwin.Logits, tc.tol, nil)
			compare(t, "logits with past vs reference", step.Logits, wantStep.Logits, tc.tol, nil)
			for i := range step.Present {
				compare(t, fmt.Sprintf("present.%d.value with past vs whole run", i), step.Present[i].Value, all.Present[i].Value, tc.tol, nil)
				compare(t, fmt.Sprintf("present.%d.key with past vs twin", i), step.Present[i].Key, stepTwin.Present[i].Key, tc.tol, nil)
			}
		})
	}
}

// TestModelBuilderInt4 quantizes the model-builder layout as the builder
// does (every MatMul, lm_head included, to MatMulNBits through package
// quantize) and runs it on ONNX Runtime: the layers are named as the
// builder names them, no float linear weight is left, and the logits
// stay near the float model's (round-to-nearest error only).
func TestModelBuilderInt4(t *testing.T) {
	for _, packed := range []bool{false, true} {
		t.Run(fmt.Sprintf("packed=%v", packed), func(t *testing.T) {
			c := builderTiny()
			c.InitStd, c.Builder.PackedQKV = 0.05, packed
			float, err := Llama(c)
			if err != nil {
				t.Fatal(err)
			}
			q := float.Clone()
			rep, err := quantize.Model(q, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Skipped) != 0 {
				t.Errorf("layers left in float: %v", rep.Skipped)
			}
			want := []string{"/model/layers.0/attn/o_proj/MatMul_Q4", "/model/layers.1/mlp/down_proj/MatMul_Q4", "/lm_head/MatMul_Q4"}
			if packed {
				want = append(want, "/model/layers.0/attn/qkv_proj/MatMul_Q4")
			} else {
				want = append(want, "/model/layers.0/attn/q_proj/MatMul_Q4", "/model/layers.1/attn/v_proj/MatMul_Q4")
			}
			for _, name := range want {
				if n := q.NodeByName(name); n == nil || n.OpType != "MatMulNBits" {
					t.Errorf("no MatMulNBits node %q", name)
				}
			}
			if q.Initializer("lm_head.MatMul.weight_Q4") == nil {
				t.Error("no lm_head.MatMul.weight_Q4")
			}
			for _, n := range q.Graph().Node {
				if n.OpType == "MatMul" && q.Initializer(n.Input[1]) != nil {
					t.Errorf("float MatMul %q is left", n.Name)
				}
			}
			dec := decoder{elem: dtype.Float32, layers: c.Layers, kvHeads: c.KVHeads, hdim: c.HeadDim(), vocab: c.VocabSize, cache: true}
			in := DecoderInputs{Batch: 1, Seq: 4, InputIDs: tokens(4, c.VocabSize, 9), AttentionMask: []int64{1, 1, 1, 1}, Past: make([]KV, c.Layers)}
			a, b := dec.run(t, session(t, float), in), dec.run(t, session(t, q), in)
			var num, den float64
			for i := range a.Logits {
				num += (a.Logits[i] - b.Logits[i]) * (a.Logits[i] - b.Logits[i])
				den += a.Logits[i] * a.Logits[i]
			}
			rel := math.Sqrt(num / den)
			t.Logf("int4 logits against float: relative error %.3g (weights %.3g)", rel, rep.RelError)
			if !(rel > 0 && rel < 0.2) {
				t.Errorf("int4 logits against float: relative error %g, want (0, 0.2)", rel)
			}
		})
	}
}
