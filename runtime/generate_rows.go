package runtime

import "slices"

// Rows of a Sequence that come and go: what continuous batching needs.
// Join appends the rows of another Sequence, KeepRows drops rows that
// ended, and SetPast starts rows on a precomputed past (a prefix).

// Join appends the rows of o, a Sequence of the same Generator, to q's,
// and leaves o empty of meaning (do not use it after). Where the two hold
// caches of different lengths, the shorter rows are padded on the left
// with masked positions, which needs attention_mask and position_ids
// inputs (each row keeps its own positions; a model that computes them
// itself would count the padding). Feeds set on q stay; the caller feeds inputs
// with a batch axis again for the new batch.
func (q *Sequence) Join(o *Sequence) error {
	s := q.g.s
	if o.g != q.g {
		return errorf("%s: Join: the sequences belong to different generators", s.name)
	}
	if q.n != o.n && (!q.info.AttentionMask || !q.info.PositionIDs) {
		return errorf("%s: Join: caches of %d and %d tokens need padding, which needs attention_mask and position_ids inputs (a model that computes positions itself would count the padding)", s.name, q.n, o.n)
	}
	if err := q.checkRowAxes("Join"); err != nil {
		return err
	}
	n := max(q.n, o.n)
	batch := q.batch + o.batch
	capacity := max(q.cap, o.cap, n)
	kv := make([][2]any, len(q.kv))
	for j := range kv {
		d, err := makeData(q.g.carried[j].slot.DType, q.lenFor(j, batch, capacity))
		if err != nil {
			return errorf("%s: %w", s.name, err)
		}
		kv[j][0] = d
		for b := range q.batch {
			q.copyRow(j, kv[j][0], q.kv[j][q.cur], rowCopy{dstBatch: batch, dstLen: n, dstRow: b, dstStart: n - q.n,
				srcBatch: q.batch, srcLen: q.n, srcRow: b, count: q.n})
		}
		for b := range o.batch {
			q.copyRow(j, kv[j][0], o.kv[j][o.cur], rowCopy{dstBatch: batch, dstLen: n, dstRow: q.batch + b, dstStart: n - o.n,
				srcBatch: o.batch, srcLen: o.n, srcRow: b, count: o.n})
		}
	}
	masks := make([][]int64, 0, batch)
	for _, src := range [][][]int64{q.masks, o.masks} {
		for _, m := range src {
			row := make([]int64, n-len(m), n+capacity-n)
			masks = append(masks, append(row, m...))
		}
	}
	q.next = append(q.next, o.next...)
	q.masks, q.kv, q.cur, q.batch, q.n, q.cap = masks, kv, 0, batch, n, capacity
	q.allocSecond()
	return nil
}

// KeepRows keeps the rows that rows lists, in that order, and drops the
// others. Cache positions that every kept row masks out at the front are
// dropped too, so that the cache is as long as its longest row.
func (q *Sequence) KeepRows(rows []int) error {
	s := q.g.s
	if len(rows) == 0 {
		return errorf("%s: KeepRows: no rows to keep", s.name)
	}
	seen := map[int]bool{}
	for _, r := range rows {
		if r < 0 || r >= q.batch || seen[r] {
			return errorf("%s: KeepRows: row %d is not a row of a batch of %d, or is given twice", s.name, r, q.batch)
		}
		seen[r] = true
	}
	if err := q.checkRowAxes("KeepRows"); err != nil {
		return err
	}
	lead := q.n
	for _, r := range rows {
		z := 0
		for z < len(q.masks[r]) && q.masks[r][z] == 0 {
			z++
		}
		lead = min(lead, z)
	}
	n := q.n - lead
	batch := len(rows)
	kv := make([][2]any, len(q.kv))
	for j := range kv {
		d, err := makeData(q.g.carried[j].slot.DType, q.lenFor(j, batch, q.cap))
		if err != nil {
			return errorf("%s: %w", s.name, err)
		}
		kv[j][0] = d
		for b, r := range rows {
			q.copyRow(j, d, q.kv[j][q.cur], rowCopy{dstBatch: batch, dstLen: n, dstRow: b,
				srcBatch: q.batch, srcLen: q.n, srcRow: r, srcStart: lead, count: n})
		}
	}
	masks := make([][]int64, batch)
	next := make([]int64, batch)
	for b, r := range rows {
		masks[b] = append(make([]int64, 0, q.cap), q.masks[r][lead:]...)
		next[b] = q.next[r]
	}
	q.masks, q.next, q.kv, q.cur, q.batch, q.n = masks, next, kv, 0, batch, n
	q.allocSecond()
	return nil
}

// SetPast starts every row of an empty Sequence on a past of p tokens
// that the caller computed, such as a prefix adapter's keys and values:
// past holds a tensor for each cache input (DecoderInfo.Past, not the
// states), shaped as the input is for p positions, with the same values
// for every row where its batch axis is 1. The positions are attended to,
// and the positions of the tokens fed next continue after them.
func (q *Sequence) SetPast(past map[string]*Tensor, p int) error {
	s := q.g.s
	if q.n != 0 {
		return errorf("%s: SetPast: the sequence already holds %d tokens", s.name, q.n)
	}
	if p <= 0 {
		return errorf("%s: SetPast: past length must be positive, got %d", s.name, p)
	}
	if err := q.checkRowAxes("SetPast"); err != nil {
		return err
	}
	if p > q.cap {
		if err := q.grow(max(p+1, 2*q.cap)); err != nil {
			return err
		}
	}
	for j, c := range q.g.carried {
		if c.state {
			continue
		}
		t := past[c.slot.Name]
		if t == nil {
			return errorf("%s: SetPast: no past for cache input %s", s.name, c.slot.Input)
		}
		one := q.shapeFor(j, 1, p)
		if t.elem != c.slot.DType || !slices.Equal(t.shape, one) {
			return errorf("%s: SetPast: past %q is %s %v, want %s %v", s.name, c.slot.Name, t.elem, t.shape, c.slot.DType, one)
		}
		for b := range q.batch {
			q.copyRow(j, q.kv[j][q.cur], t.data, rowCopy{dstBatch: q.batch, dstLen: p, dstRow: b, srcBatch: 1, srcLen: p, count: p})
		}
	}
	for b := range q.batch {
		q.masks[b] = q.masks[b][:0]
		for range p {
			q.masks[b] = append(q.masks[b], 1)
		}
		q.next[b] = int64(p)
	}
	q.n = p
	return nil
}

// checkRowAxes reports a cache whose batch axis is unknown, whose rows
// the Sequence then cannot move.
func (q *Sequence) checkRowAxes(op string) error {
	for _, c := range q.g.carried {
		if c.slot.BatchAxis < 0 {
			return errorf("%s: %s: cache input %s has no batch axis", q.g.s.name, op, c.slot.Input)
		}
	}
	return nil
}

// allocSecond gives every cache the second buffer of its pair, sized as
// the first, after Join or KeepRows made new first buffers.
func (q *Sequence) allocSecond() {
	for j := range q.kv {
		d, err := makeData(q.g.carried[j].slot.DType, dataLen(q.kv[j][0]))
		if err != nil {
			panic(err) // the same type and size as the buffer just made
		}
		q.kv[j][1] = d
	}
}

// shapeFor returns the shape of carried input j for batch rows at cache
// length l.
func (q *Sequence) shapeFor(j, batch, l int) []int64 {
	shape, err := q.g.carried[j].slot.FeedShape(batch, 0, l)
	if err != nil {
		// NewGenerator checked that every size is known.
		panic(err)
	}
	return shape
}

// lenFor returns the number of elements of carried input j for batch rows
// at cache length l.
func (q *Sequence) lenFor(j, batch, l int) int {
	n := 1
	for _, d := range q.shapeFor(j, batch, l) {
		n *= int(d)
	}
	return n
}

// rowCopy says which cache rows copyRow moves: count positions of row
// srcRow of a cache of srcBatch rows and length srcLen, from position
// srcStart, to row dstRow of a cache of dstBatch rows and length dstLen,
// from position dstStart. A cache of length l is laid out as its input is
// at length l, in the first elements of its buffer.
type rowCopy struct {
	dstBatch, dstLen, dstRow, dstStart int
	srcBatch, srcLen, srcRow, srcStart int
	count                              int
}

// copyRow copies cache rows of carried input j from src to dst as c says.
// A state has no positions: its row is copied whole.
func (q *Sequence) copyRow(j int, dst, src any, c rowCopy) {
	slot := q.g.carried[j].slot
	dstShape := q.shapeFor(j, c.dstBatch, c.dstLen)
	srcShape := q.shapeFor(j, c.srcBatch, c.srcLen)
	dstRow, srcRow, dstStart, srcStart, count := c.dstRow, c.srcRow, c.dstStart, c.srcStart, c.count
	ba, la := slot.BatchAxis, slot.LengthAxis
	if q.g.carried[j].state {
		la = -1
	}
	last := max(ba, la)
	inner := 1
	for _, d := range srcShape[last+1:] {
		inner *= int(d)
	}
	ds, ss := strides(dstShape), strides(srcShape)
	kind := dataKinds[slot.DType]
	var rec func(axis, doff, soff int)
	rec = func(axis, doff, soff int) {
		switch {
		case axis > last:
			kind.copyAt(dst, doff, src, soff, inner)
		case axis == ba:
			rec(axis+1, doff+dstRow*ds[axis], soff+srcRow*ss[axis])
		case axis == la:
			for i := range count {
				rec(axis+1, doff+(dstStart+i)*ds[axis], soff+(srcStart+i)*ss[axis])
			}
		default:
			for i := range int(srcShape[axis]) {
				rec(axis+1, doff+i*ds[axis], soff+i*ss[axis])
			}
		}
	}
	rec(0, 0, 0)
}

// strides returns the row-major strides of shape.
func strides(shape []int64) []int {
	st := make([]int, len(shape))
	n := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = n
		n *= int(shape[i])
	}
	return st
}
