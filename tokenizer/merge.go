package tokenizer

// BPE merges a word's symbols pair by pair: always the adjacent pair whose
// merge rule ranks lowest, the leftmost of equal ones, until no adjacent
// pair has a rule. mergeAll does that in O(n log n) for n symbols, as HF
// tokenizers does: the symbols are a linked list, and a min-heap holds a
// candidate for every adjacent pair with a rule, keyed by (rank, position).
// A merge adds candidates for the two new pairs it makes; candidates of
// pairs that a merge has broken stay in the heap and are skipped when they
// come out, by checking that the pair at their position still makes the
// token they would.

// mergeRule is what merging a pair of tokens makes: the rule's rank (lower
// merges first) and the id of the merged token.
type mergeRule struct {
	rank uint32
	id   uint32
}

// pairKey is the key of a pair of token ids in a merge table.
func pairKey(a, b uint32) uint64 { return uint64(a)<<32 | uint64(b) }

// symbol is a token of a word being merged, linked to its neighbours.
type symbol struct {
	id         uint32
	prev, next int32 // -1 at the ends
	gone       bool  // merged into the symbol before it
}

// candidate is a merge that may be done: the pair at pos and its next
// symbol, by a rule of rank, making token id.
type candidate struct {
	rank uint32
	pos  int32
	id   uint32
}

// before orders candidates: lowest rank first, then leftmost.
func (c candidate) before(d candidate) bool {
	return c.rank < d.rank || c.rank == d.rank && c.pos < d.pos
}

// candidateHeap is a binary min-heap of candidates.
type candidateHeap []candidate

func (h *candidateHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s[i].before(s[parent]) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *candidateHeap) pop() candidate {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	siftDown(s, 0)
	*h = s
	return top
}

// newSymbols links ids into a list of symbols.
func newSymbols(ids []uint32) []symbol {
	syms := make([]symbol, len(ids))
	for i, id := range ids {
		syms[i] = symbol{id: id, prev: int32(i - 1), next: int32(i + 1)}
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	return syms
}

// mergeAll applies the merge rules to the symbols; those left are the ones
// not gone, in list order.
func mergeAll(syms []symbol, merges map[uint64]mergeRule) {
	if len(syms) < 2 || len(merges) == 0 {
		return
	}
	heap := make(candidateHeap, 0, len(syms))
	for i := 0; i+1 < len(syms); i++ {
		if m, ok := merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			heap = append(heap, candidate{rank: m.rank, pos: int32(i), id: m.id})
		}
	}
	// Candidates were added in position order; make them a heap.
	for i := len(heap)/2 - 1; i >= 0; i-- {
		siftDown(heap, i)
	}
	for len(heap) > 0 {
		c := heap.pop()
		left := &syms[c.pos]
		if left.gone || left.next < 0 {
			continue
		}
		right := &syms[left.next]
		if m, ok := merges[pairKey(left.id, right.id)]; !ok || m.id != c.id {
			continue // the pair changed since c was added
		}
		left.id = c.id
		right.gone = true
		left.next = right.next
		if left.next >= 0 {
			syms[left.next].prev = c.pos
		}
		if left.prev >= 0 {
			if m, ok := merges[pairKey(syms[left.prev].id, left.id)]; ok {
				heap.push(candidate{rank: m.rank, pos: left.prev, id: m.id})
			}
		}
		if left.next >= 0 {
			if m, ok := merges[pairKey(left.id, syms[left.next].id)]; ok {
				heap.push(candidate{rank: m.rank, pos: c.pos, id: m.id})
			}
		}
	}
}

// siftDown moves h[i] down to its place in the heap.
func siftDown(h candidateHeap, i int) {
	for {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].before(h[smallest]) {
			smallest = l
		}
		if r < len(h) && h[r].before(h[smallest]) {
			smallest = r
		}
		if smallest == i {
			return
		}
		h[i], h[smallest] = h[smallest], h[i]
		i = smallest
	}
}
