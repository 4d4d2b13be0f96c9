package runtime

import (
	"container/heap"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
)

// sampler chooses tokens from logits, as GenerateOptions say, with
// scratch space reused from token to token.
type sampler struct {
	o      GenerateOptions
	rng    *rand.Rand
	scores []float32 // the logits after the penalty
	cands  []candidate
	probs  []float64
}

type candidate struct {
	id    int32
	score float32
}

var errNaNLogits = errors.New("logits are NaN")

func newSampler(o GenerateOptions) *sampler {
	// PCG with the seed and a fixed stream: the same seed, the same tokens.
	return &sampler{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))}
}

// pick chooses the next token from logits. seen lists the tokens of the
// row so far, for the repetition penalty; it may hold repeats.
func (s *sampler) pick(logits []float32, seen []int64) (int64, error) {
	scores := logits
	if p := float32(s.o.RepetitionPenalty); p != 1 {
		s.scores = append(s.scores[:0], logits...)
		scores = s.scores
		penalize(scores, seen, p, logits)
	}
	if s.o.Temperature == 0 {
		return argmax(scores)
	}
	return s.sample(scores)
}

// penalize applies HuggingFace's repetition penalty to scores for each
// token in seen, once per token, reading the original values from logits.
func penalize(scores []float32, seen []int64, p float32, logits []float32) {
	for _, id := range seen {
		if id < 0 || id >= int64(len(scores)) {
			continue
		}
		if l := logits[id]; l < 0 {
			scores[id] = l * p
		} else {
			scores[id] = l / p
		}
	}
}

// argmax returns the index of the largest score, the lowest on a tie.
func argmax(scores []float32) (int64, error) {
	best, bestV := 0, scores[0]
	for i, v := range scores {
		if v > bestV {
			best, bestV = i, v
		} else if v != v {
			return 0, errNaNLogits
		}
	}
	if bestV != bestV {
		return 0, errNaNLogits
	}
	return int64(best), nil
}

// sample draws a token after temperature, top-k and top-p.
func (s *sampler) sample(scores []float32) (int64, error) {
	for _, v := range scores {
		if v != v {
			return 0, errNaNLogits
		}
	}
	k := len(scores)
	if s.o.TopK > 0 && s.o.TopK < k {
		k = s.o.TopK
	}
	if k == len(scores) && s.o.TopP >= 1 {
		// No cut, so no order needed: keep the ids' order.
		s.cands = s.cands[:0]
		for i, v := range scores {
			s.cands = append(s.cands, candidate{int32(i), v})
		}
	} else {
		s.cands = topK(s.cands[:0], scores, k)
	}

	// Softmax of score/T over the candidates, in float64.
	maxScore := s.cands[0].score
	for _, c := range s.cands {
		maxScore = max(maxScore, c.score)
	}
	s.probs = s.probs[:0]
	total := 0.0
	for _, c := range s.cands {
		p := math.Exp((float64(c.score) - float64(maxScore)) / s.o.Temperature)
		s.probs = append(s.probs, p)
		total += p
	}
	n := len(s.cands)
	if s.o.TopP < 1 {
		// Candidates are sorted most likely first: keep the shortest
		// prefix that reaches TopP, at least one token.
		cum, limit := 0.0, s.o.TopP*total
		for i, p := range s.probs {
			cum += p
			if cum >= limit {
				n = i + 1
				break
			}
		}
		total = cum
	}
	u := s.rng.Float64() * total
	for i := range n {
		if u -= s.probs[i]; u < 0 {
			return int64(s.cands[i].id), nil
		}
	}
	return int64(s.cands[n-1].id), nil // rounding left u at the very top
}

// topK appends the k highest-scoring tokens to dst, most likely first, ties
// by lower id.
func topK(dst []candidate, scores []float32, k int) []candidate {
	less := func(a, b candidate) bool { // a ranks below b
		return a.score < b.score || a.score == b.score && a.id > b.id
	}
	if k >= len(scores) {
		for i, v := range scores {
			dst = append(dst, candidate{int32(i), v})
		}
	} else {
		h := &candHeap{c: dst, less: less}
		for i, v := range scores {
			c := candidate{int32(i), v}
			if len(h.c) < k {
				heap.Push(h, c)
			} else if less(h.c[0], c) {
				h.c[0] = c
				heap.Fix(h, 0)
			}
		}
		dst = h.c
	}
	slices.SortFunc(dst, func(a, b candidate) int {
		if less(a, b) {
			return 1
		}
		if less(b, a) {
			return -1
		}
		return 0
	})
	return dst
}

// candHeap is a min-heap of candidates: the lowest-ranked on top.
type candHeap struct {
	c    []candidate
	less func(a, b candidate) bool
}

func (h *candHeap) Len() int           { return len(h.c) }
func (h *candHeap) Less(i, j int) bool { return h.less(h.c[i], h.c[j]) }
func (h *candHeap) Swap(i, j int)      { h.c[i], h.c[j] = h.c[j], h.c[i] }
func (h *candHeap) Push(x any)         { h.c = append(h.c, x.(candidate)) }
func (h *candHeap) Pop() any {
	x := h.c[len(h.c)-1]
	h.c = h.c[:len(h.c)-1]
	return x
}
