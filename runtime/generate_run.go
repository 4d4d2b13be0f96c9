package runtime

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
)

// initialNewTokens is how many generated tokens the cache has room for at
// the start of a generation.
const initialNewTokens = 256

// Generate continues prompt, a sequence of token ids, and returns the
// generated ids without the prompt. It feeds the whole prompt in one run
// with an empty cache ([batch, kv_heads, 0, head_dim]), then one token per
// run with the cache that the run before returned, until MaxNewTokens
// tokens or an EOS token. On an error it returns the tokens generated so
// far with the error.
func (g *Generator) Generate(ctx context.Context, prompt []int64, opts GenerateOptions) ([]int64, error) {
	out, err := g.GenerateBatch(ctx, [][]int64{prompt}, opts)
	if len(out) == 0 {
		return nil, err
	}
	return out[0], err
}

// GenerateBatch continues several prompts at once, one row of the batch
// each, and returns the generated ids of each. Prompts of different
// lengths are padded on the left with PadID and masked out, which needs an
// attention_mask input; position_ids then count each row's own tokens, as
// HuggingFace's generate does (a model without position_ids computes
// positions itself, and padding may shift them: GPT-2 exports count the
// padding). Rows end on their own at EOS; the batch
// runs until every row has ended. Sampling draws rows in order from one
// random source, so a batch does not give the same samples as its prompts
// one at a time; greedy choice does.
func (g *Generator) GenerateBatch(ctx context.Context, prompts [][]int64, opts GenerateOptions) ([][]int64, error) {
	s := g.s
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if !g.info.Logits {
		return nil, errorf("%s: generate: the model has no logits output (outputs: %s)", s.name, joinNames(s.outputNames()))
	}
	if len(prompts) == 0 {
		return nil, errorf("%s: generate: no prompts", s.name)
	}
	longest, shortest := 0, len(prompts[0])
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, errorf("%s: generate: prompt %d is empty", s.name, i)
		}
		longest, shortest = max(longest, len(p)), min(shortest, len(p))
	}
	if longest != shortest && !g.info.AttentionMask {
		return nil, errorf("%s: generate: prompts of %d to %d tokens need padding, and the model has no attention_mask input", s.name, shortest, longest)
	}

	batch := len(prompts)
	// The cache starts with room for the prompt and a first stretch of
	// tokens and doubles as generation goes on (Sequence grows it), so
	// that a large MaxNewTokens costs memory only for tokens generated.
	seq, err := g.NewSequence(batch, longest+min(o.MaxNewTokens, initialNewTokens))
	if err != nil {
		return nil, err
	}
	if err := seq.SetFeeds(o.Feeds); err != nil {
		return nil, err
	}
	if err := seq.SetTokensPerRun(o.TokensPerRun); err != nil {
		return nil, err
	}
	ids := make([]int64, 0, batch*longest)
	var mask []int64
	if longest != shortest {
		mask = make([]int64, 0, batch*longest)
	}
	for _, p := range prompts {
		for range longest - len(p) {
			ids = append(ids, o.PadID)
			if mask != nil {
				mask = append(mask, 0)
			}
		}
		ids = append(ids, p...)
		if mask != nil {
			for range p {
				mask = append(mask, 1)
			}
		}
	}
	out, err := seq.Feed(ctx, ids, mask)
	if err != nil {
		return nil, err
	}

	smp := newSampler(o)
	seen := make([][]int64, batch)
	if o.RepetitionPenalty != 1 {
		for b, p := range prompts {
			seen[b] = slices.Clone(p)
		}
	}
	results := make([][]int64, batch)
	done := make([]bool, batch)
	next := make([]int64, batch)
	var scratch []float32
	for step := 0; ; step++ {
		vocab, last := int(out.shape[2]), int(out.shape[1])-1
		for b := range batch {
			if done[b] {
				next[b] = o.PadID
				continue
			}
			off := (b*int(out.shape[1]) + last) * vocab
			var logits []float32
			logits, scratch = rowFloat32(out, off, vocab, scratch)
			id, err := smp.pick(logits, seen[b])
			if err != nil {
				return results, errorf("%s: generate: row %d, token %d: %w", s.name, b, step, err)
			}
			results[b] = append(results[b], id)
			if seen[b] != nil {
				seen[b] = append(seen[b], id)
			}
			next[b] = id
			if o.OnToken != nil {
				if err := o.OnToken(Token{Row: b, Step: step, ID: id, Logits: logits}); err != nil {
					if errors.Is(err, ErrStopGeneration) {
						return results, nil
					}
					return results, err
				}
			}
			if slices.Contains(o.EOS, id) || len(results[b]) == o.MaxNewTokens {
				done[b] = true
			}
		}
		if !slices.Contains(done, false) {
			return results, nil
		}
		if out, err = seq.Feed(ctx, next, nil); err != nil {
			return results, err
		}
	}
}

// rowFloat32 returns n logits of t from offset off as float32: a view of
// t's data where it is float32, else a conversion into scratch, which it
// returns for reuse.
func rowFloat32(t *Tensor, off, n int, scratch []float32) (row, buf []float32) {
	if d, ok := t.data.([]float32); ok {
		return d[off : off+n], scratch
	}
	scratch = slices.Grow(scratch[:0], n)[:n]
	switch t.elem {
	case dtype.Float16, dtype.BFloat16:
		src := t.data.([]uint16)[off : off+n]
		if t.elem == dtype.BFloat16 {
			for i, v := range src {
				scratch[i] = half.BFloat16ToFloat32(v)
			}
			break
		}
		table := float16Table()
		for i, v := range src {
			scratch[i] = table[v]
		}
	default:
		sub := &Tensor{elem: t.elem, shape: []int64{int64(n)}, data: sliceAt(t.data, off, off+n)}
		for i, v := range sub.ToFloat64() {
			scratch[i] = float32(v)
		}
	}
	return scratch, scratch
}

// float16Table returns every float16 value widened to float32, indexed by
// its bits: a look-up is several times faster than the conversion, which
// matters for a vocabulary of logits per token.
var float16Table = sync.OnceValue(func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = half.Float16ToFloat32(uint16(i))
	}
	return t
})
