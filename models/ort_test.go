package models

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// These tests run the graphs on ONNX Runtime and hold their outputs to the
// float64 references.

// testStd makes the tiny models' weights large enough that attention is far
// from uniform, so that a wrong mask, rotation or head order shows.
const testStd = 0.25

// session builds a session for m, or skips the test without ONNX Runtime.
func session(t *testing.T, m *graph.Model) *rt.Session {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ints(t *testing.T, shape []int64, v []int64) *rt.Tensor {
	t.Helper()
	x, err := rt.NewInt64(shape, v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// floats returns a tensor of type elem holding v.
func floats(t *testing.T, elem dtype.Type, shape []int64, v []float64) *rt.Tensor {
	t.Helper()
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	var x *rt.Tensor
	var err error
	if elem == dtype.Float16 {
		x, err = rt.NewFloat16FromFloat32(shape, f)
	} else {
		x, err = rt.NewFloat32(shape, f)
	}
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// tokens returns n token ids below vocab, deterministic in seed.
func tokens(n, vocab int, seed uint64) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(mix64(seed+uint64(i)*golden) % uint64(vocab))
	}
	return ids
}

// positionsFromMask returns HF's generation positions: the number of
// kept tokens before each one, 1 at padding.
func positionsFromMask(mask []int64, batch, total, past int) []int64 {
	seq := total - past
	pos := make([]int64, batch*seq)
	for b := range batch {
		n := int64(0)
		for j := range total {
			p := n
			if mask[b*total+j] == 0 {
				p = 1
			} else {
				n++
			}
			if j >= past {
				pos[b*seq+j-past] = p
			}
		}
	}
	return pos
}

// tol is a comparison tolerance: |got − want| ≤ abs + rel·|want|.
type tol struct{ abs, rel float64 }

var tol32 = tol{1e-4, 1e-4}

// compare fails the test where got and want differ beyond tol at an index
// that keep accepts (nil keeps all).
func compare(t *testing.T, what string, got, want []float64, tl tol, keep func(i int) bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d values want %d", what, len(got), len(want))
		return
	}
	bad, worst := 0, 0.0
	for i := range got {
		if keep != nil && !keep(i) {
			continue
		}
		d := math.Abs(got[i] - want[i])
		if !(d <= tl.abs+tl.rel*math.Abs(want[i])) {
			if bad == 0 {
				t.Errorf("%s: first difference at %d: got %g want %g", what, i, got[i], want[i])
			}
			bad++
		}
		worst = max(worst, d)
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ; largest difference %g", what, bad, len(got), worst)
	} else {
		t.Logf("%s: largest difference %.3g", what, worst)
	}
}

// decoder describes one decoder family for the shared tests.
type decoder struct {
	model                 *graph.Model
	elem                  dtype.Type
	layers, kvHeads, hdim int
	vocab                 int
	cache, positions      bool
	ref                   func(w Weights, in DecoderInputs) (*DecoderOutputs, error)
}

// run feeds in to the decoder's session and returns logits and presents.
func (d decoder) run(t *testing.T, s *rt.Session, in DecoderInputs) *DecoderOutputs {
	t.Helper()
	total := len(in.AttentionMask) / in.Batch
	past := total - in.Seq
	feeds := map[string]*rt.Tensor{
		"input_ids":      ints(t, []int64{int64(in.Batch), int64(in.Seq)}, in.InputIDs),
		"attention_mask": ints(t, []int64{int64(in.Batch), int64(total)}, in.AttentionMask),
	}
	if d.positions {
		feeds["position_ids"] = ints(t, []int64{int64(in.Batch), int64(in.Seq)}, in.PositionIDs)
	}
	outputs := []string{"logits"}
	if d.cache {
		shape := []int64{int64(in.Batch), int64(d.kvHeads), int64(past), int64(d.hdim)}
		for i := range d.layers {
			var k, v []float64
			if in.Past != nil {
				k, v = in.Past[i].Key, in.Past[i].Value
			}
			feeds[fmt.Sprintf("past_key_values.%d.key", i)] = floats(t, d.elem, shape, k)
			feeds[fmt.Sprintf("past_key_values.%d.value", i)] = floats(t, d.elem, shape, v)
			outputs = append(outputs, fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i))
		}
	}
	res, err := s.Run(feeds, outputs)
	if err != nil {
		t.Fatal(err)
	}
	out := &DecoderOutputs{Logits: res["logits"].ToFloat64()}
	if d.cache {
		for i := range d.layers {
			out.Present = append(out.Present, KV{
				Key:   res[fmt.Sprintf("present.%d.key", i)].ToFloat64(),
				Value: res[fmt.Sprintf("present.%d.value", i)].ToFloat64(),
			})
		}
	}
	return out
}

// keepReal keeps the entries of a [batch, kv, total, dim] cache at
// positions the mask keeps: padding positions see no key at all, so their
// hidden states, and the keys of later layers there, depend on how many
// keys the run has.
func keepReal(mask []int64, batch, kv, total, dim int) func(int) bool {
	return func(i int) bool {
		pos := i / dim % total
		b := i / (dim * total * kv)
		return mask[b*total+pos] != 0
	}
}

// testDecoder checks one decoder against its reference on a padded batch,
// then, where it has a cache, checks that a prefix run followed by a run
// with the past gives what the whole run gives.
func testDecoder(t *testing.T, d decoder, tl tol) {
	s := session(t, d.model)
	w, err := WeightsOf(d.model)
	if err != nil {
		t.Fatal(err)
	}
	const batch, seq = 2, 5
	// Row 0 is full; row 1 is left-padded by 2.
	mask := []int64{1, 1, 1, 1, 1, 0, 0, 1, 1, 1}
	full := DecoderInputs{
		Batch: batch, Seq: seq,
		InputIDs:      tokens(batch*seq, d.vocab, 3),
		AttentionMask: mask,
		PositionIDs:   positionsFromMask(mask, batch, seq, 0),
	}
	want, err := d.ref(w, full)
	if err != nil {
		t.Fatal(err)
	}
	if d.cache {
		full.Past = make([]KV, d.layers) // empty past: [batch, kv, 0, dim]
	}
	got := d.run(t, s, full)
	// A padding query sees no key: every score gets the mask's lowest
	// value, and in float32 that absorbs the score, so its attention is
	// uniform in the graph as in the reference. ONNX Runtime computes a
	// float16 model's Add in float32, where -65504 does not absorb the
	// score, so there those rows, meaningless either way, are not compared.
	var keepLogits, keepCache func(int) bool
	if d.elem == dtype.Float16 {
		keepLogits = func(i int) bool { return mask[i/d.vocab] != 0 }
		keepCache = keepReal(mask, batch, d.kvHeads, seq, d.hdim)
	}
	compare(t, "logits", got.Logits, want.Logits, tl, keepLogits)
	for i := range got.Present {
		compare(t, fmt.Sprintf("present.%d.key", i), got.Present[i].Key, want.Present[i].Key, tl, keepCache)
		compare(t, fmt.Sprintf("present.%d.value", i), got.Present[i].Value, want.Present[i].Value, tl, keepCache)
	}
	if !d.cache {
		return
	}

	// The first 3 tokens, then the last 2 with the past.
	const pre = 3
	split := func(x []int64, width, lo, hi int) []int64 {
		var out []int64
		for b := range batch {
			out = append(out, x[b*width+lo:b*width+hi]...)
		}
		return out
	}
	first := DecoderInputs{
		Batch: batch, Seq: pre,
		InputIDs:      split(full.InputIDs, seq, 0, pre),
		AttentionMask: split(mask, seq, 0, pre),
		PositionIDs:   split(full.PositionIDs, seq, 0, pre),
		Past:          make([]KV, d.layers),
	}
	prefix := d.run(t, s, first)
	next := DecoderInputs{
		Batch: batch, Seq: seq - pre,
		InputIDs:      split(full.InputIDs, seq, pre, seq),
		AttentionMask: mask,
		PositionIDs:   split(full.PositionIDs, seq, pre, seq),
		Past:          prefix.Present,
	}
	step := d.run(t, s, next)
	vocab := d.vocab
	compare(t, "logits with past vs. whole run", step.Logits, split64(got.Logits, batch, seq*vocab, pre*vocab, seq*vocab), tl, nil)
	keep := keepReal(mask, batch, d.kvHeads, seq, d.hdim)
	for i := range step.Present {
		compare(t, fmt.Sprintf("present.%d.key with past vs. whole run", i), step.Present[i].Key, got.Present[i].Key, tl, keep)
		compare(t, fmt.Sprintf("present.%d.value with past vs. whole run", i), step.Present[i].Value, got.Present[i].Value, tl, keep)
	}
	wantStep, err := d.ref(w, next)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "logits with past vs. reference", step.Logits, wantStep.Logits, tl, nil)
}

// split64 returns, for each of n rows of width values, the values [lo, hi).
func split64(x []float64, n, width, lo, hi int) []float64 {
	var out []float64
	for r := range n {
		out = append(out, x[r*width+lo:r*width+hi]...)
	}
	return out
}

func TestLlamaMatchesReference(t *testing.T) {
	tests := []struct {
		name string
		edit func(*LlamaConfig)
		tol  tol
	}{
		{"gqa", func(c *LlamaConfig) {}, tol32},
		{"mha", func(c *LlamaConfig) { c.KVHeads = 0 }, tol32},
		{"mqa-nocache", func(c *LlamaConfig) { c.KVHeads = 1; c.NoCache = true }, tol32},
		{"rope-interleaved", func(c *LlamaConfig) { c.RopeInterleaved = true }, tol32},
		{"fp16", func(c *LlamaConfig) { c.DType = dtype.Float16 }, tol{1e-2, 1e-2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := LlamaTiny()
			c.InitStd = testStd
			tc.edit(&c)
			m, err := Llama(c)
			if err != nil {
				t.Fatal(err)
			}
			cw := c.withDefaults()
			testDecoder(t, decoder{
				model: m, elem: cw.DType, layers: c.Layers, kvHeads: cw.KVHeads, hdim: c.HeadDim(),
				vocab: c.VocabSize, cache: !c.NoCache, positions: true,
				ref: func(w Weights, in DecoderInputs) (*DecoderOutputs, error) { return LlamaReference(c, w, in) },
			}, tc.tol)
		})
	}
}

func TestGPT2MatchesReference(t *testing.T) {
	tests := []struct {
		name string
		edit func(*GPT2Config)
	}{
		{"matmul", func(c *GPT2Config) {}},
		{"gemm-nocache", func(c *GPT2Config) { c.Gemm = true; c.NoCache = true }},
		{"gemm-decomposed-anonymous", func(c *GPT2Config) { c.Gemm, c.DecomposeLayerNorm, c.AnonymousNodes = true, true, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := GPT2Tiny()
			c.InitStd = testStd
			tc.edit(&c)
			m, err := GPT2(c)
			if err != nil {
				t.Fatal(err)
			}
			testDecoder(t, decoder{
				model: m, elem: dtype.Float32, layers: c.Layers, kvHeads: c.Heads, hdim: c.HeadDim(),
				vocab: c.VocabSize, cache: !c.NoCache,
				ref: func(w Weights, in DecoderInputs) (*DecoderOutputs, error) { return GPT2Reference(c, w, in) },
			}, tol32)
		})
	}
}

func TestBERTMatchesReference(t *testing.T) {
	tests := []struct {
		name string
		edit func(*BERTConfig)
	}{
		{"plain", func(c *BERTConfig) {}},
		{"token-types", func(c *BERTConfig) { c.TokenTypeIDs = true }},
		{"decomposed", func(c *BERTConfig) { c.DecomposeLayerNorm = true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := BERTTiny()
			c.InitStd = testStd
			tc.edit(&c)
			m, err := BERT(c)
			if err != nil {
				t.Fatal(err)
			}
			s := session(t, m)
			w, err := WeightsOf(m)
			if err != nil {
				t.Fatal(err)
			}
			const batch, seq = 3, 5
			in := EncoderInputs{
				Batch: batch, Seq: seq,
				InputIDs:      tokens(batch*seq, c.VocabSize, 5),
				AttentionMask: []int64{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0},
			}
			shape := []int64{batch, seq}
			feeds := map[string]*rt.Tensor{
				"input_ids":      ints(t, shape, in.InputIDs),
				"attention_mask": ints(t, shape, in.AttentionMask),
			}
			if c.TokenTypeIDs {
				in.TokenTypeIDs = []int64{0, 0, 1, 1, 1, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1}
				feeds["token_type_ids"] = ints(t, shape, in.TokenTypeIDs)
			}
			want, err := BERTReference(c, w, in)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Run(feeds, nil)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, "logits", res["logits"].ToFloat64(), want, tol32, nil)
		})
	}
}
