package demo

import "github.com/peftonnx/peftonnx/train"

// successor is the rule the synthetic task follows: each token is followed
// by (5·t + 3) mod period. A freshly built model knows nothing of it, so
// its loss starts near ln(vocab); a trained adapter drives it down.
func successor(t, period int64) int64 { return (5*t + 3) % period }

// taskData returns n sequences of length seqLen that follow successor,
// each from a start token drawn from a seeded generator.
func taskData(name string, n, seqLen int, period int64, seed uint64) *train.Dataset {
	rng := train.NewRNG(seed)
	d := &train.Dataset{Path: name}
	for i := 0; i < n; i++ {
		ids := make([]int64, seqLen)
		ids[0] = int64(rng.Uint64() % uint64(period))
		for j := 1; j < seqLen; j++ {
			ids[j] = successor(ids[j-1], period)
		}
		d.Examples = append(d.Examples, train.Example{InputIDs: ids, Labels: ids, Line: i + 1})
	}
	return d
}
