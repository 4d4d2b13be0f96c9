package runtime

import (
	"context"
	"maps"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
)

// Sequence is a batch of token sequences that a decoder is reading: their
// KV cache, attention mask and positions. Feed runs the model on the next
// tokens of every row, with the cache of the tokens before, and keeps the
// cache that the model returns for the next Feed. Generate is built on it;
// use it directly to score text or to step a model that has no logits.
//
// The cache lives in two buffers per cache tensor, sized for the capacity
// given to NewSequence: one is fed as the past while ONNX Runtime writes the
// present into the other, and they swap after every run, so a step copies
// nothing and allocates no tensor data. Outputs are written in place too.
// Past the capacity, the buffers grow.
//
// A Sequence is not safe for concurrent use.
type Sequence struct {
	g     *Generator
	info  *DecoderInfo
	batch int
	n     int // tokens per row so far, the cache length
	cap   int // tokens per row that the cache buffers hold

	kv  [][2]any // per cache tensor, the two buffers
	cur int      // which of each pair holds the past

	masks [][]int64 // per row, the attention mask so far
	next  []int64   // per row, the position of the next kept token

	out      any // the output buffer, [batch, seq, vocab]
	chunkOut any // Feed's output where the model takes fewer tokens per run than fed

	tokensPerRun int // overrides info.StepTokens where positive

	idsBuf, maskBuf, posBuf []int64
	in, outs                map[string]*Tensor
	feeds                   map[string]*Tensor // the caller's further inputs, also in in
	converted               map[string]*Tensor // ids, mask, positions and token types in a type other than int64, by input
}

// SetTokensPerRun makes Feed run at most n tokens at a time (see
// GenerateOptions.TokensPerRun); 0 restores the model's own step size.
func (q *Sequence) SetTokensPerRun(n int) error {
	if n < 0 {
		return errorf("%s: tokens per run must not be negative, got %d", q.g.s.name, n)
	}
	if st := q.info.StepTokens; st > 0 && n > 0 && n != st {
		return errorf("%s: the model takes exactly %d tokens per run, not %d", q.g.s.name, st, n)
	}
	q.tokensPerRun = n
	return nil
}

// NewSequence starts batch empty sequences, with cache buffers for capacity
// tokens per row (prompt and generated together); 0 picks a small default.
func (g *Generator) NewSequence(batch, capacity int) (*Sequence, error) {
	if batch <= 0 {
		return nil, errorf("%s: sequence batch must be positive, got %d", g.s.name, batch)
	}
	if capacity < 0 {
		return nil, errorf("%s: sequence capacity must not be negative, got %d", g.s.name, capacity)
	}
	if capacity == 0 {
		capacity = 64
	}
	q := &Sequence{
		g: g, info: &g.info, batch: batch,
		masks: make([][]int64, batch),
		next:  make([]int64, batch),
		kv:    make([][2]any, len(g.info.Past)),
		in:    make(map[string]*Tensor, len(g.info.Past)+3),
		outs:  make(map[string]*Tensor, len(g.info.Present)+1),
	}
	if err := q.grow(capacity); err != nil {
		return nil, err
	}
	return q, nil
}

// Len returns the number of tokens per row that the cache holds.
func (q *Sequence) Len() int { return q.n }

// Batch returns the number of rows.
func (q *Sequence) Batch() int { return q.batch }

// cacheShape returns the shape of carried input j at cache length l (a
// state's does not depend on l).
func (q *Sequence) cacheShape(j, l int) []int64 {
	shape, err := q.g.carried[j].slot.FeedShape(q.batch, 0, l)
	if err != nil {
		// NewGenerator checked that every size is known.
		panic(err)
	}
	return shape
}

// cacheLen returns the number of elements of carried input j at cache
// length l.
func (q *Sequence) cacheLen(j, l int) int {
	n := 1
	for _, d := range q.cacheShape(j, l) {
		n *= int(d)
	}
	return n
}

// grow makes the cache buffers hold capacity tokens per row, keeping the
// cache. A cache tensor of length l is the first cacheLen(l) elements of
// its buffer whatever the buffer's size, so the cache is copied as is.
func (q *Sequence) grow(capacity int) error {
	for j := range q.kv {
		size := q.cacheLen(j, capacity)
		var pair [2]any
		for k := range pair {
			d, err := makeData(q.g.carried[j].slot.DType, size)
			if err != nil {
				return errorf("%s: %w", q.g.s.name, err)
			}
			pair[k] = d
		}
		if old := q.kv[j][q.cur]; old != nil {
			dataKinds[q.g.carried[j].slot.DType].copyAt(pair[q.cur], 0, old, 0, q.cacheLen(j, q.n))
		}
		q.kv[j] = pair
	}
	q.cap = capacity
	return nil
}

// SetFeeds sets further inputs that every later run takes as they are,
// such as the LoRA factors of a model whose adapters are inputs (rewrite's
// AsInputs layout): the model's inputs other than input_ids,
// attention_mask, position_ids and the KV cache. It replaces the feeds set
// before; nil removes them. The tensors must not change while a run is in
// progress.
func (q *Sequence) SetFeeds(feeds map[string]*Tensor) error {
	s := q.g.s
	for _, name := range slices.Sorted(maps.Keys(feeds)) {
		i, ok := s.inIdx[name]
		switch {
		case !ok:
			return errorf("%s: feed %q is not an input of the model (%s)", s.name, name, s.describeInputs())
		case q.g.ownsInput(name):
			return errorf("%s: feed %q is an input that generation feeds itself", s.name, name)
		}
		if err := checkTensor(s.inputs[i], feeds[name]); err != nil {
			return errorf("%s: feed %w", s.name, err)
		}
	}
	for name := range q.feeds {
		delete(q.in, name)
	}
	q.feeds = feeds
	for name, t := range feeds {
		q.in[name] = t
	}
	return nil
}

// Feed runs the model on the next tokens of every row and returns its
// output (the logits, see DecoderInfo.Output) for them, [batch, seq,
// vocab]. ids holds batch rows of seq tokens, row after row; mask, if not
// nil, holds 1 for each token to attend to and 0 for padding, in the same
// layout. A nil mask keeps every token. Padding needs an attention_mask
// input; positions follow HuggingFace: a kept token's position is the
// number of kept tokens before it in its row.
//
// Where the model takes a fixed number of tokens per run (StepTokens),
// Feed runs it once per chunk of that many; if one fails, the chunks
// before it stay in the cache. The returned tensor is reused by the next
// Feed: copy what must outlive it.
func (q *Sequence) Feed(ctx context.Context, ids, mask []int64) (*Tensor, error) {
	s := q.g.s
	for _, name := range q.g.others {
		if q.feeds[name] == nil {
			return nil, errorf("%s: Feed: the model takes input %s, which generation does not feed: give it with SetFeeds (GenerateOptions.Feeds)",
				s.name, s.inputs[s.inIdx[name]])
		}
	}
	if len(ids) == 0 || len(ids)%q.batch != 0 {
		return nil, errorf("%s: Feed: %d token ids do not make %d rows of one or more tokens", s.name, len(ids), q.batch)
	}
	seq := len(ids) / q.batch
	if mask != nil {
		if len(mask) != len(ids) {
			return nil, errorf("%s: Feed: mask has %d entries for %d token ids", s.name, len(mask), len(ids))
		}
		for i, m := range mask {
			if m != 0 && m != 1 {
				return nil, errorf("%s: Feed: mask[%d] is %d, want 0 or 1", s.name, i, m)
			}
			if m == 0 && !q.info.AttentionMask {
				return nil, errorf("%s: Feed: the model has no attention_mask input, so it cannot skip padding", s.name)
			}
		}
	}
	if v := q.g.vocabSize(); v > 0 && q.info.Logits {
		for i, id := range ids {
			if id < 0 || id >= int64(v) {
				return nil, errorf("%s: Feed: token id %d at %d is outside the vocabulary of %d", s.name, id, i, v)
			}
		}
	}
	if need := q.n + seq; need > q.cap {
		if err := q.grow(max(need, 2*q.cap)); err != nil {
			return nil, err
		}
	}
	chunk := seq
	st := q.info.StepTokens
	if q.tokensPerRun > 0 {
		st = q.tokensPerRun
	}
	if st > 0 {
		if seq%st != 0 {
			return nil, errorf("%s: Feed: the model takes %d tokens per run; %d do not divide into runs", s.name, st, seq)
		}
		chunk = st
	}
	rowIDs := make([]int64, 0, q.batch*chunk)
	rowMask := make([]int64, 0, q.batch*chunk)
	for c := 0; c < seq; c += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rowIDs, rowMask = rowIDs[:0], rowMask[:0]
		for b := range q.batch {
			rowIDs = append(rowIDs, ids[b*seq+c:b*seq+c+chunk]...)
			if mask != nil {
				rowMask = append(rowMask, mask[b*seq+c:b*seq+c+chunk]...)
			}
		}
		var m []int64
		if mask != nil {
			m = rowMask
		}
		out, err := q.step(rowIDs, m, chunk)
		if err != nil {
			return nil, err
		}
		if chunk == seq {
			return out, nil
		}
		// Gather the chunks' outputs into one [batch, seq, vocab] tensor.
		v := q.g.vocabSize()
		if c == 0 {
			if q.chunkOut, err = q.ensureOut(q.chunkOut, q.batch*seq*v); err != nil {
				return nil, err
			}
		}
		k := dataKinds[out.elem]
		for b := range q.batch {
			k.copyAt(q.chunkOut, (b*seq+c)*v, out.data, b*chunk*v, chunk*v)
		}
	}
	return newTensor(q.outDType(), []int64{int64(q.batch), int64(seq), int64(q.g.vocabSize())},
		sliceData(q.chunkOut, q.batch*seq*q.g.vocabSize()), q.batch*seq*q.g.vocabSize())
}

func (q *Sequence) outDType() dtype.Type {
	return q.g.s.outputs[q.g.s.outIdx[q.info.Output]].DType
}

// ensureOut returns buf if it holds n elements, or a new buffer that does.
func (q *Sequence) ensureOut(buf any, n int) (any, error) {
	if dataLen(buf) >= n {
		return buf, nil
	}
	d, err := makeData(q.outDType(), n)
	if err != nil {
		return nil, errorf("%s: %w", q.g.s.name, err)
	}
	return d, nil
}

// step runs the model once on seq tokens per row.
func (q *Sequence) step(ids, mask []int64, seq int) (*Tensor, error) {
	s, info := q.g.s, q.info
	total := q.n + seq

	q.idsBuf = append(q.idsBuf[:0], ids...)
	rows := []int64{int64(q.batch), int64(seq)}
	if err := q.setInts(q.g.ids, q.g.idsType, rows, q.idsBuf); err != nil {
		return nil, err
	}
	q.posBuf = q.posBuf[:0]
	for b := range q.batch {
		for j := range seq {
			keep := int64(1)
			if mask != nil {
				keep = mask[b*seq+j]
			}
			q.masks[b] = append(q.masks[b], keep)
			// HuggingFace's positions: cumsum(mask) − 1, and 1 at padding.
			p := int64(1)
			if keep == 1 {
				p = q.next[b]
				q.next[b]++
			}
			q.posBuf = append(q.posBuf, p)
		}
	}
	if q.g.mask != "" {
		q.maskBuf = q.maskBuf[:0]
		for b := range q.batch {
			q.maskBuf = append(q.maskBuf, q.masks[b]...)
		}
		if err := q.setInts(q.g.mask, q.g.maskType, []int64{int64(q.batch), int64(total)}, q.maskBuf); err != nil {
			return nil, q.undo(seq, err)
		}
	}
	if q.g.pos != "" {
		if err := q.setInts(q.g.pos, q.g.posType, rows, q.posBuf); err != nil {
			return nil, q.undo(seq, err)
		}
	}
	if q.g.types != "" {
		if t := q.in[q.g.types]; t == nil || !slices.Equal(t.shape, rows) {
			z, err := Zeros(q.g.typesType, rows)
			if err != nil {
				return nil, q.undo(seq, errorf("%s: %w", s.name, err))
			}
			q.in[q.g.types] = z
		}
	}
	presentShapes := make([][]int64, len(info.Past))
	for j, name := range info.Past {
		dt := q.g.carried[j].slot.DType
		pastShape, presentShape := q.cacheShape(j, q.n), q.cacheShape(j, total)
		pastLen, presentLen := q.cacheLen(j, q.n), q.cacheLen(j, total)
		presentShapes[j] = presentShape
		q.in[name] = mustTensor(newTensor(dt, pastShape, sliceData(q.kv[j][q.cur], pastLen), pastLen))
		q.outs[info.Present[j]] = mustTensor(newTensor(dt, presentShape, sliceData(q.kv[j][1-q.cur], presentLen), presentLen))
	}

	var out *Tensor
	vocab := q.g.vocabSize()
	if vocab > 0 {
		n := q.batch * seq * vocab
		var err error
		if q.out, err = q.ensureOut(q.out, n); err != nil {
			return nil, q.undo(seq, err)
		}
		out = mustTensor(newTensor(q.outDType(), []int64{int64(q.batch), int64(seq), int64(vocab)}, sliceData(q.out, n), n))
		q.outs[info.Output] = out
		if err := s.RunInto(q.in, q.outs); err != nil {
			return nil, q.undo(seq, err)
		}
	} else {
		// The model leaves the output's last axis dynamic: let ONNX
		// Runtime allocate this once, and learn the size.
		names := append(append([]string(nil), info.Present...), info.Output)
		res, err := s.Run(q.in, names)
		if err != nil {
			return nil, q.undo(seq, err)
		}
		for j, name := range info.Present {
			t := res[name]
			if !slices.Equal(t.shape, presentShapes[j]) {
				return nil, q.undo(seq, errorf("%s: output %q has shape %v, want %v", s.name, name, t.shape, presentShapes[j]))
			}
			dataKinds[t.elem].copyAt(q.outs[name].data, 0, t.data, 0, t.Len())
		}
		out = res[info.Output]
		if len(out.shape) != 3 || out.shape[0] != int64(q.batch) || out.shape[1] != int64(seq) || out.shape[2] <= 0 {
			return nil, q.undo(seq, errorf("%s: output %q has shape %v, want [%d %d vocab]", s.name, info.Output, out.shape, q.batch, seq))
		}
		q.g.setVocab(int(out.shape[2]))
		q.out = out.data
	}
	q.cur = 1 - q.cur
	q.n = total
	return out, nil
}

// setInts feeds input name values of shape shape in element type dt:
// without a copy for int64, converted into a tensor that later steps of
// the same shape reuse otherwise.
func (q *Sequence) setInts(name string, dt dtype.Type, shape, values []int64) error {
	if dt == dtype.Int64 {
		q.in[name] = mustTensor(newTensor(dtype.Int64, shape, values, len(values)))
		return nil
	}
	t := q.converted[name]
	if t == nil || !slices.Equal(t.shape, shape) {
		var err error
		if t, err = Zeros(dt, shape); err != nil {
			return errorf("%s: input %q: %w", q.g.s.name, name, err)
		}
		if q.converted == nil {
			q.converted = map[string]*Tensor{}
		}
		q.converted[name] = t
	}
	if err := t.SetInt64s(values); err != nil {
		return errorf("%s: input %q: %w", q.g.s.name, name, err)
	}
	q.in[name] = t
	return nil
}

// undo forgets the mask and positions of a step that failed, and returns
// err.
func (q *Sequence) undo(seq int, err error) error {
	for b := range q.batch {
		for _, keep := range q.masks[b][len(q.masks[b])-seq:] {
			if keep == 1 {
				q.next[b]--
			}
		}
		q.masks[b] = q.masks[b][:len(q.masks[b])-seq]
	}
	return err
}

// mustTensor panics on an error from newTensor where the sizes are the
// Sequence's own arithmetic: a programmer error.
func mustTensor(t *Tensor, err error) *Tensor {
	if err != nil {
		panic(err)
	}
	return t
}
