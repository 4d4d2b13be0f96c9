package serve

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// job is one request: queued, then a row of the batch.
type job struct {
	ctx       context.Context
	req       Request
	a         *entry    // nil for the base
	events    *delivery // to the request's emit
	queued    time.Time
	maxTokens int

	slot int
	smp  *rt.Sampler
	out  []int64

	done     chan struct{}
	finished bool // finish ran (the scheduler's own field)
	usage    Usage
	err      error
}

// Generate queues r, batches it with others (continuous batching) and
// calls emit for each token, then once with Done and the finish reason,
// in order, from a goroutine of the request's own: a slow emit (a slow
// client) delays its own stream only, not the batch. Cancelling ctx (the
// client left) ends the sequence with ctx's error, and so does an error
// (or a panic) of emit, at the next step. Generate returns once every
// event was emitted. It returns
// the request's usage. Errors wrap ErrUnknownAdapter, ErrQueueFull,
// ErrTooLong, ErrInvalidRequest or ErrClosed where they are those.
func (e *Engine) Generate(ctx context.Context, r Request, emit func(Event) error) (Usage, error) {
	usage := Usage{PromptTokens: len(r.Prompt)}
	maxTokens, err := e.check(r)
	if err != nil {
		return usage, err
	}
	opts := rt.GenerateOptions{Temperature: float64(r.Temperature), Seed: uint64(r.Seed)}
	if r.Temperature > 0 {
		opts.TopK, opts.TopP = r.TopK, float64(r.TopP)
	}
	smp, err := rt.NewSampler(opts, r.Prompt)
	if err != nil {
		return usage, errorf("%w: %w", ErrInvalidRequest, err)
	}
	a, err := e.acquire(r.Adapter)
	if err != nil {
		return usage, err
	}
	defer e.release(a)
	j := &job{ctx: ctx, req: r, a: a, queued: time.Now(), maxTokens: maxTokens, smp: smp, slot: -1, done: make(chan struct{})}
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		return usage, errorf("%w", ErrClosed)
	case len(e.queue) >= e.opts.MaxQueue:
		e.mu.Unlock()
		return usage, errorf("%w: %d requests wait already", ErrQueueFull, len(e.queue))
	}
	// Room for every token the request may get, and Done.
	j.events = newDelivery(ctx, maxTokens+1, emit)
	e.queue = append(e.queue, j)
	st := e.stats.Adapters[r.Adapter]
	st.Requests++
	e.stats.Adapters[r.Adapter] = st
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		e.mu.Lock()
		if i := slices.Index(e.queue, j); i >= 0 {
			e.queue = slices.Delete(e.queue, i, i+1)
			e.mu.Unlock()
			j.events.close()
			j.events.wait()
			return usage, ctx.Err()
		}
		e.mu.Unlock()
		<-j.done
	}
	if err := j.events.wait(); err != nil && j.err == nil {
		return j.usage, err
	}
	return j.usage, j.err
}

// check validates r against the engine's limits and returns its token
// budget.
func (e *Engine) check(r Request) (int, error) {
	if len(r.Prompt) == 0 {
		return 0, errorf("%w: the prompt is empty", ErrInvalidRequest)
	}
	if v := e.info.Vocab; v > 0 {
		for i, id := range r.Prompt {
			if id < 0 || id >= int64(v) {
				return 0, errorf("%w: prompt token %d at %d is outside the vocabulary of %d", ErrInvalidRequest, id, i, v)
			}
		}
	}
	n := r.MaxTokens
	switch {
	case n < 0:
		return 0, errorf("%w: max tokens %d is negative", ErrInvalidRequest, n)
	case n == 0:
		n = e.opts.MaxTokens
	case n > e.opts.MaxTokens:
		return 0, errorf("%w: max tokens %d is over the limit of %d", ErrTooLong, n, e.opts.MaxTokens)
	}
	if e.opts.MaxSeqLen > 0 && len(r.Prompt)+n > e.opts.MaxSeqLen {
		return 0, errorf("%w: a prompt of %d tokens and %d new ones pass the limit of %d", ErrTooLong, len(r.Prompt), n, e.opts.MaxSeqLen)
	}
	return n, nil
}

// schedule is the engine's goroutine: it admits queued requests into the
// batch at step boundaries, prefills them, and runs one decoding step for
// every active row at a time, until Close.
func (e *Engine) schedule() {
	defer close(e.done)
	slots := newSlotTable(e.opts.MaxLoRAs)
	var active *rt.Sequence
	var rows []*job
	for {
		var quit bool
		if active, rows, quit = e.turn(slots, active, rows); quit {
			return
		}
	}
}

// turn is one round of the scheduler: admit, prefill, step. It reports
// quit once the engine closed and every request has ended. A panic (a bug)
// ends the requests in flight with an error rather than the process.
func (e *Engine) turn(slots *slotTable, active *rt.Sequence, rows []*job) (_ *rt.Sequence, _ []*job, quit bool) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error("scheduler panic", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			for j := range e.inflight {
				e.finish(slots, j, "", errorf("internal error: %v", r))
			}
			*slots = *newSlotTable(e.opts.MaxLoRAs)
			active, rows, quit = nil, nil, false
		}
	}()
	select {
	case <-e.quit:
		e.mu.Lock()
		queued := e.queue
		e.queue = nil
		e.mu.Unlock()
		for _, j := range append(rows, queued...) {
			e.finish(slots, j, "", errorf("%w: the engine closed", ErrClosed))
		}
		return nil, nil, true
	default:
	}
	joiners := e.admit(slots, len(rows))
	if len(rows) == 0 && len(joiners) == 0 {
		select {
		case <-e.wake:
		case <-e.quit:
		}
		return nil, nil, false
	}
	feeds, err := slots.inputs(e.stacked)
	if err != nil {
		for _, j := range append(rows, joiners...) {
			e.finish(slots, j, "", errorf("building the stacked adapter inputs: %w", err))
		}
		return nil, nil, false
	}
	for _, group := range byPast(joiners) {
		seq, started := e.prefill(slots, group, feeds)
		if seq == nil {
			continue
		}
		if active == nil {
			active = seq
		} else if err := active.Join(seq); err != nil {
			e.failAll(slots, started, err)
			continue
		}
		rows = append(rows, started...)
	}
	if len(rows) == 0 {
		return nil, nil, false
	}
	active, rows = e.step(slots, active, rows, feeds)
	return active, rows, false
}

// admit takes queued requests into the batch while it has room and the
// adapter a slot, in queue order; a request whose adapter finds no slot
// waits, and those behind it may go first.
func (e *Engine) admit(slots *slotTable, active int) []*job {
	e.mu.Lock()
	defer e.mu.Unlock()
	var in []*job
	kept := e.queue[:0]
	for _, j := range e.queue {
		if active+len(in) >= e.opts.MaxBatch || e.opts.MaxJoin > 0 && len(in) >= e.opts.MaxJoin {
			kept = append(kept, j)
			continue
		}
		if j.ctx.Err() != nil {
			in = append(in, j) // prefill finishes it with the error
			j.slot = -1
			e.inflight[j] = struct{}{}
			continue
		}
		s := slots.take(j.a)
		if s < 0 {
			kept = append(kept, j)
			continue
		}
		j.slot = s
		e.inflight[j] = struct{}{}
		st := e.stats.Adapters[j.req.Adapter]
		st.QueueSeconds += time.Since(j.queued).Seconds()
		e.stats.Adapters[j.req.Adapter] = st
		in = append(in, j)
	}
	clear(e.queue[len(kept):])
	e.queue = kept
	return in
}

// prefill starts the rows of joiners that share a past (the same prefix
// adapter, or none): one sequence of a row each, prompts padded on the
// left, on the prefix where there is one, fed the prompts in one run; each
// row's first token is chosen and emitted. It returns the sequence and the
// jobs of its rows that go on, nil where none do.
func (e *Engine) prefill(slots *slotTable, joiners []*job, feeds map[string]*rt.Tensor) (*rt.Sequence, []*job) {
	var group []*job
	for _, j := range joiners {
		if err := j.ctx.Err(); err != nil {
			e.finish(slots, j, "", err)
			continue
		}
		group = append(group, j)
	}
	if len(group) == 0 {
		return nil, nil
	}
	var past map[string]*rt.Tensor
	p := 0
	if a := group[0].a; a != nil && a.kind == KindPrefix {
		a.mu.Lock()
		past, p = a.past, a.rank
		a.mu.Unlock()
	}
	longest, budget := 0, 0
	for _, j := range group {
		longest, budget = max(longest, len(j.req.Prompt)), max(budget, j.maxTokens)
	}
	ids := make([]int64, 0, len(group)*longest)
	mask := make([]int64, 0, len(group)*longest)
	index := make([]int64, len(group))
	for i, j := range group {
		for range longest - len(j.req.Prompt) {
			ids, mask = append(ids, 0), append(mask, 0)
		}
		ids = append(ids, j.req.Prompt...)
		for range j.req.Prompt {
			mask = append(mask, 1)
		}
		index[i] = int64(j.slot)
	}
	seq, err := e.gen.NewSequence(len(group), p+longest+budget)
	if err == nil && past != nil {
		err = seq.SetPast(past, p)
	}
	var out *rt.Tensor
	if err == nil {
		out, err = feedRows(seq, feeds, index, ids, mask)
	}
	if err != nil {
		e.failAll(slots, group, err)
		return nil, nil
	}
	var keep []int
	var left []*job
	for i, j := range group {
		if !e.next(slots, j, out, i) {
			keep, left = append(keep, i), append(left, j)
		}
	}
	switch {
	case len(left) == 0:
		return nil, nil
	case len(left) < len(group):
		if err := seq.KeepRows(keep); err != nil {
			e.failAll(slots, left, err)
			return nil, nil
		}
	}
	return seq, left
}

// byPast groups joiners by the past they start from: a prefix adapter's,
// or none, in the order each group first appears.
func byPast(joiners []*job) [][]*job {
	var groups [][]*job
	at := map[*entry]int{}
	for _, j := range joiners {
		var key *entry
		if j.a != nil && j.a.kind == KindPrefix {
			key = j.a
		}
		g, ok := at[key]
		if !ok {
			g = len(groups)
			at[key] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], j)
	}
	return groups
}

// step runs one decoding step for every row, emits each row's token, and
// drops the rows that finished. It returns the batch that remains.
func (e *Engine) step(slots *slotTable, active *rt.Sequence, rows []*job, feeds map[string]*rt.Tensor) (*rt.Sequence, []*job) {
	ids := make([]int64, len(rows))
	index := make([]int64, len(rows))
	for i, j := range rows {
		ids[i], index[i] = j.out[len(j.out)-1], int64(j.slot)
	}
	start := time.Now()
	out, err := feedRows(active, feeds, index, ids, nil)
	if err != nil {
		e.failAll(slots, rows, err)
		return nil, nil
	}
	e.mu.Lock()
	e.stats.Steps++
	e.stats.BatchRows += int64(len(rows))
	e.stats.StepSeconds += time.Since(start).Seconds()
	e.stats.BatchSizes[min(len(rows), len(e.stats.BatchSizes)-1)]++
	e.mu.Unlock()
	var keep []int
	var left []*job
	for i, j := range rows {
		if err := j.ctx.Err(); err != nil {
			e.finish(slots, j, "", err)
			continue
		}
		if err := j.events.failed(); err != nil {
			e.finish(slots, j, "", err)
			continue
		}
		if !e.next(slots, j, out, i) {
			keep = append(keep, i)
			left = append(left, j)
		}
	}
	e.mu.Lock()
	e.stats.Active = len(left)
	e.mu.Unlock()
	if len(left) == 0 {
		return nil, nil
	}
	if len(left) < len(rows) {
		if err := active.KeepRows(keep); err != nil {
			e.failAll(slots, left, err)
			return nil, nil
		}
	}
	return active, left
}

// next chooses j's next token from row row of out and emits it, and
// finishes j where it ended. It reports whether j finished.
func (e *Engine) next(slots *slotTable, j *job, out *rt.Tensor, row int) bool {
	id, err := j.smp.Pick(out, row)
	if err != nil {
		e.finish(slots, j, "", err)
		return true
	}
	j.out = append(j.out, id)
	if err := j.events.send(Event{Token: id}); err != nil {
		e.finish(slots, j, "", err)
		return true
	}
	switch {
	case slices.Contains(e.opts.EOS, id) || stopsAt(j.out, j.req.Stop):
		e.finish(slots, j, FinishStop, nil)
	case len(j.out) >= j.maxTokens:
		e.finish(slots, j, FinishLength, nil)
	default:
		return false
	}
	return true
}

// stopsAt reports whether out ends with one of stops.
func stopsAt(out []int64, stops [][]int64) bool {
	for _, s := range stops {
		if len(s) > 0 && len(out) >= len(s) && slices.Equal(out[len(out)-len(s):], s) {
			return true
		}
	}
	return false
}

// failAll ends every job of jobs with err.
func (e *Engine) failAll(slots *slotTable, jobs []*job, err error) {
	for _, j := range jobs {
		e.finish(slots, j, "", err)
	}
}

// finish ends j: with the Done event and reason, or with err; it gives
// back j's slot and wakes Generate.
func (e *Engine) finish(slots *slotTable, j *job, reason string, err error) {
	if j.finished {
		return
	}
	j.finished = true
	delete(e.inflight, j)
	j.usage = Usage{PromptTokens: len(j.req.Prompt), CompletionTokens: len(j.out)}
	if err == nil {
		err = j.events.send(Event{Done: true, FinishReason: reason})
	}
	j.events.close()
	j.err = err
	slots.put(j.slot)
	j.slot = -1
	e.mu.Lock()
	st := e.stats.Adapters[j.req.Adapter]
	st.PromptTokens += int64(j.usage.PromptTokens)
	st.CompletionTokens += int64(j.usage.CompletionTokens)
	e.stats.Adapters[j.req.Adapter] = st
	e.mu.Unlock()
	close(j.done)
}

// feedRows sets the stacked inputs with the rows' slot index on seq and
// feeds it ids and mask.
func feedRows(seq *rt.Sequence, feeds map[string]*rt.Tensor, index, ids, mask []int64) (*rt.Tensor, error) {
	if err := seq.SetFeeds(withIndex(feeds, index)); err != nil {
		return nil, err
	}
	return seq.Feed(context.Background(), ids, mask)
}

// withIndex returns the stacked inputs with the per-row slot index.
func withIndex(feeds map[string]*rt.Tensor, index []int64) map[string]*rt.Tensor {
	out := make(map[string]*rt.Tensor, len(feeds)+1)
	for k, v := range feeds {
		out[k] = v
	}
	t, err := rt.NewInt64([]int64{int64(len(index))}, index)
	if err != nil {
		panic(err) // the shape is the slice's own length
	}
	out[rewrite.StackedIndexInput] = t
	return out
}
