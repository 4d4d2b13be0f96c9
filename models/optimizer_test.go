package models

import (
	"fmt"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// runStackedGPT2 runs a transformer-optimizer GPT-2 (position_ids and
// stacked past_{i} inputs) on in and returns logits and the presents,
// each unstacked into key and value.
func runStackedGPT2(t *testing.T, s *rt.Session, c GPT2Config, in DecoderInputs) *DecoderOutputs {
	t.Helper()
	total := len(in.AttentionMask) / in.Batch
	past := total - in.Seq
	feeds := map[string]*rt.Tensor{
		"input_ids":      ints(t, []int64{int64(in.Batch), int64(in.Seq)}, in.InputIDs),
		"position_ids":   ints(t, []int64{int64(in.Batch), int64(in.Seq)}, in.PositionIDs),
		"attention_mask": ints(t, []int64{int64(in.Batch), int64(total)}, in.AttentionMask),
	}
	outputs := []string{"logits"}
	if !c.NoCache {
		for i := range c.Layers {
			var kv []float64
			if in.Past != nil {
				kv = append(append(kv, in.Past[i].Key...), in.Past[i].Value...)
			}
			feeds[fmt.Sprintf("past_%d", i)] = floats(t, dtype.Float32, []int64{2, int64(in.Batch), int64(c.Heads), int64(past), int64(c.HeadDim())}, kv)
			outputs = append(outputs, fmt.Sprintf("present_%d", i))
		}
	}
	res, err := s.Run(feeds, outputs)
	if err != nil {
		t.Fatal(err)
	}
	out := &DecoderOutputs{Logits: res["logits"].ToFloat64()}
	if !c.NoCache {
		for i := range c.Layers {
			p := res[fmt.Sprintf("present_%d", i)].ToFloat64()
			out.Present = append(out.Present, KV{Key: p[:len(p)/2], Value: p[len(p)/2:]})
		}
	}
	return out
}

// TestOptimizedGPT2MatchesTwinAndReference runs the transformer-optimizer
// GPT-2 (EmbedLayerNormalization, unidirectional Attention with past and
// a raw mask, SkipLayerNormalization with bias, FastGelu with bias) on
// ONNX Runtime against its standard-op twin and the float64 reference, on
// a left-padded batch (the raw mask handles either side), then a prefix
// run followed by a run with the past.
func TestOptimizedGPT2MatchesTwinAndReference(t *testing.T) {
	for _, noCache := range []bool{false, true} {
		t.Run(fmt.Sprintf("nocache=%v", noCache), func(t *testing.T) {
			c := GPT2Tiny()
			c.InitStd, c.NoCache, c.Producer = testStd, noCache, TransformerOptimizer
			fused, err := GPT2(c)
			if err != nil {
				t.Fatal(err)
			}
			tc := c
			tc.Optimizer.Unfused = true
			twin, err := GPT2(tc)
			if err != nil {
				t.Fatal(err)
			}
			oc := c
			oc.Producer = Optimum
			optimum, err := GPT2(oc)
			if err != nil {
				t.Fatal(err)
			}
			w, err := WeightsOf(optimum)
			if err != nil {
				t.Fatal(err)
			}
			sf, st := session(t, fused), session(t, twin)

			const batch, seq = 2, 5
			mask := []int64{1, 1, 1, 1, 1, 0, 0, 1, 1, 1}
			in := DecoderInputs{Batch: batch, Seq: seq, InputIDs: tokens(batch*seq, c.VocabSize, 3), AttentionMask: mask,
				PositionIDs: []int64{0, 1, 2, 3, 4, 0, 1, 2, 3, 4}}
			want, err := GPT2Reference(oc, w, in)
			if err != nil {
				t.Fatal(err)
			}
			if !noCache {
				in.Past = make([]KV, c.Layers)
			}
			got, gotTwin := runStackedGPT2(t, sf, c, in), runStackedGPT2(t, st, tc, in)
			keep := func(i int) bool { return mask[i/c.VocabSize] != 0 }
			keepCache := keepReal(mask, batch, c.Heads, seq, c.HeadDim())
			compare(t, "logits vs twin", got.Logits, gotTwin.Logits, tol32, keep)
			compare(t, "logits vs reference", got.Logits, want.Logits, tol32, keep)
			for i := range got.Present {
				compare(t, fmt.Sprintf("present.%d.key vs twin", i), got.Present[i].Key, gotTwin.Present[i].Key, tol32, keepCache)
				compare(t, fmt.Sprintf("present.%d.value vs reference", i), got.Present[i].Value, want.Present[i].Value, tol32, keepCache)
			}
			if noCache {
				return
			}

			const pre = 3
			cut := func(x []int64, width, lo, hi int) []int64 {
				var out []int64
				for b := range batch {
					out = append(out, x[b*width+lo:b*width+hi]...)
				}
				return out
			}
			first := runStackedGPT2(t, sf, c, DecoderInputs{Batch: batch, Seq: pre, InputIDs: cut(in.InputIDs, seq, 0, pre),
				AttentionMask: cut(mask, seq, 0, pre), PositionIDs: cut(in.PositionIDs, seq, 0, pre), Past: make([]KV, c.Layers)})
			next := DecoderInputs{Batch: batch, Seq: seq - pre, InputIDs: cut(in.InputIDs, seq, pre, seq), AttentionMask: mask,
				PositionIDs: cut(in.PositionIDs, seq, pre, seq), Past: first.Present}
			step, stepTwin := runStackedGPT2(t, sf, c, next), runStackedGPT2(t, st, tc, next)
			v := c.VocabSize
			compare(t, "logits with past vs whole run", step.Logits, split64(got.Logits, batch, seq*v, pre*v, seq*v), tol32, nil)
			compare(t, "logits with past vs twin", step.Logits, stepTwin.Logits, tol32, nil)
			wantStep, err := GPT2Reference(oc, w, next)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "logits with past vs reference", step.Logits, wantStep.Logits, tol32, nil)
		})
	}
}

// TestOptimizedBERTMatchesTwinAndReference runs the transformer-optimizer
// BERT (EmbedLayerNormalization with its mask_index or the raw mask,
// Attention with the packed QKV weight and bias, SkipLayerNormalization
// with bias, BiasGelu) on ONNX Runtime against its standard-op twin, the
// Optimum layout and the float64 reference, on a batch padded on the
// right.
func TestOptimizedBERTMatchesTwinAndReference(t *testing.T) {
	tests := []struct {
		name string
		edit func(*BERTConfig)
	}{
		{"mask-index", func(c *BERTConfig) {}},
		{"raw-mask-token-types", func(c *BERTConfig) { c.Optimizer.RawMask, c.TokenTypeIDs = true, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := BERTTiny()
			c.InitStd, c.Producer = testStd, TransformerOptimizer
			tc.edit(&c)
			const batch, seq = 3, 5
			in := EncoderInputs{
				Batch: batch, Seq: seq, InputIDs: tokens(batch*seq, c.VocabSize, 5),
				AttentionMask: []int64{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0},
			}
			shape := []int64{batch, seq}
			feeds := func() map[string]*rt.Tensor {
				f := map[string]*rt.Tensor{"input_ids": ints(t, shape, in.InputIDs), "attention_mask": ints(t, shape, in.AttentionMask)}
				if c.TokenTypeIDs {
					f["token_type_ids"] = ints(t, shape, in.TokenTypeIDs)
				}
				return f
			}
			if c.TokenTypeIDs {
				in.TokenTypeIDs = []int64{0, 0, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1}
			}
			logits := map[string][]float64{}
			for _, layout := range []string{"fused", "twin", "optimum"} {
				lc := c
				switch layout {
				case "twin":
					lc.Optimizer.Unfused = true
				case "optimum":
					lc.Producer = Optimum
				}
				m, err := BERT(lc)
				if err != nil {
					t.Fatal(err)
				}
				res, err := session(t, m).Run(feeds(), nil)
				if err != nil {
					t.Fatal(err)
				}
				logits[layout] = res["logits"].ToFloat64()
				if layout == "optimum" {
					w, err := WeightsOf(m)
					if err != nil {
						t.Fatal(err)
					}
					want, err := BERTReference(lc, w, in)
					if err != nil {
						t.Fatal(err)
					}
					logits["reference"] = want
				}
			}
			compare(t, "logits vs twin", logits["fused"], logits["twin"], tol32, nil)
			compare(t, "logits vs optimum layout", logits["fused"], logits["optimum"], tol32, nil)
			compare(t, "logits vs reference", logits["fused"], logits["reference"], tol32, nil)
		})
	}
}
