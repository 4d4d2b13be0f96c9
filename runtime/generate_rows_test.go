package runtime_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestSequenceJoinKeepRows starts rows at different times, joins them
// into one batch of caches of different lengths, drops rows as they end,
// and holds every row's greedy tokens to Generate on its prompt alone:
// on LLaMA (per-layer caches) and GPT-2 after ONNX Runtime's optimizer
// (stacked past_{i}, position_ids). A GPT-2 that computes positions in the
// graph cannot be padded, and Join says so.
func TestSequenceJoinKeepRows(t *testing.T) {
	c := models.GPT2Tiny()
	c.InitStd, c.Producer = genStd, models.TransformerOptimizer
	m, err := models.GPT2(c)
	optimized := modelSession(t, m, err)
	for name, s := range map[string]*rt.Session{"llama": llamaTiny(t, nil), "gpt2-optimized": optimized} {
		t.Run(name, func(t *testing.T) {
			g := newGenerator(t, s)
			prompts := [][]int64{{1, 5, 9, 3}, {7, 2}, {4, 4, 8, 1, 6, 2, 11}}
			lengths := []int{9, 4, 6} // tokens to generate per row
			var want [][]int64
			for i, p := range prompts {
				w, err := g.Generate(context.Background(), p, rt.GenerateOptions{MaxNewTokens: lengths[i]})
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, w)
			}
			ctx := context.Background()
			pick := func(out *rt.Tensor, row int) int64 {
				smp, err := rt.NewSampler(rt.GenerateOptions{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				id, err := smp.Pick(out, row)
				if err != nil {
					t.Fatal(err)
				}
				return id
			}
			got := make([][]int64, len(prompts))
			var batch *rt.Sequence
			var rows []int // prompt of each row of batch
			for step := 0; step < 20; step++ {
				// Prompt i joins at step 2·i.
				if i := step / 2; step%2 == 0 && i < len(prompts) {
					q, err := g.NewSequence(1, 4)
					if err != nil {
						t.Fatal(err)
					}
					out, err := q.Feed(ctx, prompts[i], nil)
					if err != nil {
						t.Fatal(err)
					}
					got[i] = append(got[i], pick(out, 0))
					if batch == nil {
						batch = q
					} else if err := batch.Join(q); err != nil {
						t.Fatal(err)
					}
					rows = append(rows, i)
				}
				if batch == nil {
					break
				}
				ids := make([]int64, len(rows))
				for r, i := range rows {
					ids[r] = got[i][len(got[i])-1]
				}
				out, err := batch.Feed(ctx, ids, nil)
				if err != nil {
					t.Fatal(err)
				}
				var keep, left []int
				for r, i := range rows {
					got[i] = append(got[i], pick(out, r))
					if len(got[i]) < lengths[i] {
						keep, left = append(keep, r), append(left, i)
					}
				}
				switch {
				case len(keep) == 0:
					batch, rows = nil, nil
				case len(keep) < len(rows):
					if err := batch.KeepRows(keep); err != nil {
						t.Fatal(err)
					}
					rows = left
				}
			}
			for i := range prompts {
				if !slices.Equal(got[i], want[i]) {
					t.Errorf("prompt %d: got %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestSequenceJoinNeedsPositions(t *testing.T) {
	g := newGenerator(t, gpt2Tiny(t))
	ctx := context.Background()
	var seqs []*rt.Sequence
	for _, p := range [][]int64{{1, 2, 3}, {4, 5}} {
		q, err := g.NewSequence(1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Feed(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, q)
	}
	if err := seqs[0].Join(seqs[1]); err == nil || !strings.Contains(err.Error(), "position_ids") {
		t.Errorf("joining caches of 3 and 2 tokens on a model without position_ids: %v, want an error that says so", err)
	}
}

// TestSamplerMatchesGenerate steps a Sequence with a Sampler and gets the
// tokens that Generate samples with the same options and seed.
func TestSamplerMatchesGenerate(t *testing.T) {
	g := newGenerator(t, llamaTiny(t, nil))
	ctx := context.Background()
	prompt := []int64{3, 1, 4, 1, 5}
	opts := rt.GenerateOptions{MaxNewTokens: 10, Temperature: 1.5, TopK: 12, TopP: 0.9, Seed: 7, RepetitionPenalty: 1.3}
	want, err := g.Generate(ctx, prompt, opts)
	if err != nil {
		t.Fatal(err)
	}
	smp, err := rt.NewSampler(opts, prompt)
	if err != nil {
		t.Fatal(err)
	}
	q, err := g.NewSequence(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	ids := prompt
	for range opts.MaxNewTokens {
		out, err := q.Feed(ctx, ids, nil)
		if err != nil {
			t.Fatal(err)
		}
		id, err := smp.Pick(out, 0)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
		ids = []int64{id}
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if slices.Equal(want, make([]int64, len(want))) {
		t.Fatal("all tokens 0: the test proves nothing")
	}
	if _, err := rt.NewSampler(rt.GenerateOptions{TopK: 3}, nil); err == nil {
		t.Error("TopK without a temperature was accepted")
	}
}
