package tensorparallel

import (
	"math"

	"github.com/peftonnx/peftonnx/train"
)

// vocabLoss computes the causal LM loss of logits split by vocabulary
// among the ranks of comm, and the gradient with respect to this rank's
// logits. logits is [rows·seq, per]: this rank's columns start at token
// id start, and the first valid of its per columns are real token ids
// (the others pad the vocabulary, and are left out). Position t of a row is scored against the label at t+1, over
// labels that are not train.IgnoreIndex, as train.CausalLMLoss scores. Every rank gets
// the same loss; grad has logits' layout. The sum is divided by denom,
// the positions that the whole step scores (over every data-parallel
// rank), so that the ranks' losses add up to the step's mean.
func vocabLoss(comm train.Collective, logits []float32, labels []int64, rows, seq, per, valid, start, denom int) (loss float64, grad []float32, scored int, err error) {
	n := comm.Size()
	type pos struct{ at, target int } // the logits row and the target id
	var ps []pos
	for r := range rows {
		for t := range seq - 1 {
			if y := labels[r*seq+t+1]; y != train.IgnoreIndex {
				ps = append(ps, pos{r*seq + t, int(y)})
			}
		}
	}
	grad = make([]float32, len(logits))
	if len(ps) == 0 {
		return 0, grad, 0, nil
	}
	// Each position's largest logit over the whole vocabulary: every rank
	// writes its own in its slot, and the sum gathers them.
	maxes := make([]float64, n*len(ps))
	for i, p := range ps {
		m := math.Inf(-1)
		for _, v := range logits[p.at*per : p.at*per+valid] {
			m = max(m, float64(v))
		}
		maxes[comm.Rank()*len(ps)+i] = m
	}
	if err := comm.AllReduceSumFloat64(maxes); err != nil {
		return 0, nil, 0, err
	}
	top := make([]float64, len(ps))
	for i := range ps {
		top[i] = math.Inf(-1)
		for k := range n {
			top[i] = max(top[i], maxes[k*len(ps)+i])
		}
	}
	// The sum of exponentials and the target's logit, over the ranks.
	sums := make([]float64, 2*len(ps))
	for i, p := range ps {
		var s float64
		for _, v := range logits[p.at*per : p.at*per+valid] {
			s += math.Exp(float64(v) - top[i])
		}
		sums[i] = s
		if local := p.target - start; local >= 0 && local < valid {
			sums[len(ps)+i] = float64(logits[p.at*per+local])
		}
	}
	if err := comm.AllReduceSumFloat64(sums); err != nil {
		return 0, nil, 0, err
	}
	inv := 1 / float64(denom)
	for i, p := range ps {
		lse := math.Log(sums[i]) + top[i]
		loss += (lse - sums[len(ps)+i]) * inv
		row := grad[p.at*per : (p.at+1)*per]
		for j, v := range logits[p.at*per : p.at*per+valid] {
			row[j] = float32(math.Exp(float64(v)-lse) * inv)
		}
		if local := p.target - start; local >= 0 && local < valid {
			row[local] -= float32(inv)
		}
	}
	return loss, grad, len(ps), nil
}
