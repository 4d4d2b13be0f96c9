package models

import (
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestLlamaTensorParallelLogits runs the pieces of 2 and 4 ranks, summing
// their partial outputs between pieces as an all-reduce would, and checks
// that the logits, put together from every rank's run of the vocabulary,
// are the whole model's.
func TestLlamaTensorParallelLogits(t *testing.T) {
	// A vocabulary of 31 on 2 ranks, and of 30 on 4, is padded.
	for _, tc := range []struct{ kvHeads, degree, vocab int }{{2, 2, 32}, {4, 4, 32}, {2, 2, 31}, {4, 4, 30}} {
		c := LlamaTiny()
		c.NoCache, c.InitStd, c.KVHeads, c.VocabSize = true, testStd, tc.kvHeads, tc.vocab
		llamaTensorParallelLogits(t, c, tc.degree)
	}
	// With a KV cache, each attention piece takes its KV heads of the
	// past.
	cached := LlamaTiny()
	cached.InitStd, cached.VocabSize = testStd, 31
	llamaTensorParallelLogits(t, cached, 2)
	c := LlamaTiny()
	c.NoCache = true
	full, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LlamaTensorParallel(c, full, 0, 4); err == nil {
		t.Errorf("2 KV heads on 4 ranks: no error")
	}
}

// llamaTensorParallelLogits is TestLlamaTensorParallelLogits for one
// model and degree.
func llamaTensorParallelLogits(t *testing.T, c LlamaConfig, degree int) {
	full, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	const batch, seq = 2, 5
	past := 0
	if !c.NoCache {
		past = 3
	}
	ids := tokens(batch*seq, c.VocabSize, 3)
	mask := make([]int64, batch*(past+seq))
	pos := make([]int64, batch*seq)
	for i := range mask {
		mask[i] = 1
	}
	for i := range pos {
		pos[i] = int64(past + i%seq)
	}
	mask[batch*(past+seq)-1] = 0 // padding at the end of the last row
	shape, mshape := []int64{batch, seq}, []int64{batch, int64(past + seq)}
	// The past of each layer, keys then values, [batch, kv, past, d].
	kv, d := c.KVHeads, c.Hidden/c.Heads
	pasts := make([][]float32, 2*c.Layers)
	for i := range pasts {
		pasts[i] = make([]float32, batch*kv*past*d)
		for j := range pasts[i] {
			pasts[i][j] = float32(math.Sin(float64(7*i+j))) / 2
		}
	}
	pastShape := []int64{batch, int64(kv), int64(past), int64(d)}
	// rankPast returns rank r's KV heads of past p.
	rankPast := func(p []float32, r int) []float32 {
		per := kv / degree
		var out []float32
		for b := range batch {
			lo := (b*kv + r*per) * past * d
			out = append(out, p[lo:lo+per*past*d]...)
		}
		return out
	}
	run := func(s *rt.Session, in map[string]*rt.Tensor, out string) []float32 {
		t.Helper()
		res, err := s.Run(in, []string{out})
		if err != nil {
			t.Fatal(err)
		}
		return res[out].ToFloat32()
	}
	feeds := map[string]*rt.Tensor{"input_ids": ints(t, shape, ids), "attention_mask": ints(t, mshape, mask), "position_ids": ints(t, shape, pos)}
	if !c.NoCache {
		for i := range c.Layers {
			feeds[fmt.Sprintf("past_key_values.%d.key", i)] = floats32(t, pastShape, pasts[2*i])
			feeds[fmt.Sprintf("past_key_values.%d.value", i)] = floats32(t, pastShape, pasts[2*i+1])
		}
	}
	want := run(session(t, full), feeds, "logits")

	pieces := make([]*LlamaPieces, degree)
	for r := range pieces {
		if pieces[r], err = LlamaTensorParallel(c, full, r, degree); err != nil {
			t.Fatal(err)
		}
	}
	// sum runs piece j of every rank on in and returns the sum of
	// their outputs.
	sum := func(j int, in map[string]*rt.Tensor) []float32 {
		var total []float32
		for r, p := range pieces {
			m := p.Embed
			if j >= 0 {
				m = p.Blocks[j]
			}
			if j >= 0 && j%2 == 0 && !c.NoCache {
				per := []int64{batch, int64(kv / degree), int64(past), int64(d)}
				in["past_key"], in["past_value"] = floats32(t, per, rankPast(pasts[j], r)), floats32(t, per, rankPast(pasts[j+1], r))
			}
			part := run(session(t, m), in, "partial")
			if total == nil {
				total = make([]float32, len(part))
			}
			for i, v := range part {
				total[i] += v
			}
		}
		return total
	}
	hidden := sum(-1, map[string]*rt.Tensor{"input_ids": ints(t, shape, ids)})
	hshape := []int64{batch, seq, int64(c.Hidden)}
	for j := range pieces[0].Blocks {
		in := map[string]*rt.Tensor{"hidden": floats32(t, hshape, hidden)}
		if j%2 == 0 {
			in["attention_mask"], in["position_ids"] = ints(t, mshape, mask), ints(t, shape, pos)
		}
		for i, v := range sum(j, in) {
			hidden[i] += v
		}
	}
	width := (c.VocabSize + degree - 1) / degree
	worst, held := 0.0, 0
	for r, p := range pieces {
		if p.VocabStart != r*width || p.VocabWidth != width {
			t.Errorf("degree %d rank %d: vocabulary from %d, width %d; want %d, %d", degree, r, p.VocabStart, p.VocabWidth, r*width, width)
		}
		held += p.VocabIDs
		got := run(session(t, p.Head), map[string]*rt.Tensor{"hidden": floats32(t, hshape, hidden)}, "logits")
		for row := range batch * seq {
			for v := range width {
				g := got[row*width+v]
				if v >= p.VocabIDs {
					if g != 0 {
						t.Errorf("degree %d rank %d: padded logit %d is %v, want 0", degree, r, v, g)
					}
					continue
				}
				w := want[row*c.VocabSize+p.VocabStart+v]
				worst = max(worst, math.Abs(float64(g-w))/max(1, math.Abs(float64(w))))
			}
		}
	}
	if held != c.VocabSize {
		t.Errorf("degree %d: the ranks hold %d ids, want %d", degree, held, c.VocabSize)
	}
	if worst > 1e-5 {
		t.Errorf("degree %d: logits differ from the whole model's by %.3g", degree, worst)
	}
	t.Logf("degree %d, vocabulary %d: logits within %.3g of the whole model's", degree, c.VocabSize, worst)
}

// floats32 returns a float32 tensor over v.
func floats32(t *testing.T, shape []int64, v []float32) *rt.Tensor {
	t.Helper()
	x, err := rt.NewFloat32(shape, append([]float32(nil), v...))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestLlamaTensorParallelDrawn checks that the pieces drawn without the
// full model hold the full model's weights, sliced, bit for bit.
func TestLlamaTensorParallelDrawn(t *testing.T) {
	c := LlamaTiny()
	c.NoCache, c.VocabSize = true, 31 // padded on the last rank
	full, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	for rank := range 2 {
		a, err := LlamaTensorParallel(c, full, rank, 2)
		if err != nil {
			t.Fatal(err)
		}
		b, err := LlamaTensorParallel(c, nil, rank, 2)
		if err != nil {
			t.Fatal(err)
		}
		pa := append(append([]*graph.Model{a.Embed}, a.Blocks...), a.Head)
		pb := append(append([]*graph.Model{b.Embed}, b.Blocks...), b.Head)
		for i := range pa {
			for _, init := range pa[i].Graph().Initializer {
				other := pb[i].Initializer(init.Name)
				if other == nil || !proto.Equal(init, other) {
					t.Errorf("rank %d piece %d: %s differs when drawn", rank, i, init.Name)
				}
			}
		}
	}
}
