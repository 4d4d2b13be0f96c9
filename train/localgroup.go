package train

import "sync"

// NewLocalGroup returns a Collective for each of n ranks that are
// goroutines of one process, rank r at index r: each collective waits for
// every rank, and each rank then computes the result from copies of every
// rank's buffer, summed in rank order, so every rank gets the same bits.
// It runs data- or tensor-parallel training on one machine without MPI,
// as the tests do. Every rank must call each collective, in the same
// order.
func NewLocalGroup(n int) []Collective {
	g := &localGroup{n: n, slots: make([]any, n)}
	g.cond = sync.NewCond(&g.mu)
	ranks := make([]Collective, n)
	for r := range ranks {
		ranks[r] = localRank{g, r}
	}
	return ranks
}

// localGroup is the state the ranks of NewLocalGroup share.
type localGroup struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n       int
	gen     int   // collectives completed
	slots   []any // this collective's buffers, by rank
	arrived int
	prev    []any // the last completed collective's buffers
}

// exchange deposits v as rank's buffer and returns every rank's, once all
// have deposited theirs.
func (g *localGroup) exchange(rank int, v any) []any {
	g.mu.Lock()
	defer g.mu.Unlock()
	gen := g.gen
	g.slots[rank] = v
	g.arrived++
	if g.arrived == g.n {
		g.prev, g.slots, g.arrived = g.slots, make([]any, g.n), 0
		g.gen++
		g.cond.Broadcast()
	}
	for g.gen == gen {
		g.cond.Wait()
	}
	// No later collective completes before this rank joins it, so prev
	// is still this one's.
	return g.prev
}

// localRank is one rank of a localGroup.
type localRank struct {
	g    *localGroup
	rank int
}

func (r localRank) Rank() int { return r.rank }
func (r localRank) Size() int { return r.g.n }

func (r localRank) AllReduceSumFloat32(buf []float32) error {
	sumRanks(r.g.exchange(r.rank, append([]float32(nil), buf...)), buf)
	return nil
}

func (r localRank) AllReduceSumFloat64(buf []float64) error {
	sumRanks(r.g.exchange(r.rank, append([]float64(nil), buf...)), buf)
	return nil
}

func (r localRank) BroadcastBytes(buf []byte, root int) error {
	all := r.g.exchange(r.rank, append([]byte(nil), buf...))
	copy(buf, all[root].([]byte))
	return nil
}

// sumRanks sets buf to the sum of the ranks' buffers, in rank order.
func sumRanks[T float32 | float64](all []any, buf []T) {
	clear(buf)
	for _, b := range all {
		for i, v := range b.([]T) {
			buf[i] += v
		}
	}
}
