package combine

import (
	"math"
	"sort"
)

// pruneMagnitude returns t with all but its int(density·len(t)) largest
// magnitudes set to zero, as PEFT's magnitude_based_pruning; among equal
// magnitudes the earlier element is kept. A density of 1 or more keeps t.
func pruneMagnitude(t []float64, density float64) []float64 {
	if density >= 1 {
		return t
	}
	k := int(density * float64(len(t)))
	order := make([]int, len(t))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return math.Abs(t[order[i]]) > math.Abs(t[order[j]]) })
	out := make([]float64, len(t))
	for _, i := range order[:k] {
		out[i] = t[i]
	}
	return out
}

// pruneRandom returns t with each value kept where mask says so and
// divided by density, as PEFT's random_pruning with rescale (DARE). A
// density of 1 or more keeps t and draws nothing.
func pruneRandom(t []float64, density float64, mask maskSource) []float64 {
	if density >= 1 {
		return t
	}
	out := make([]float64, len(t))
	for i, v := range t {
		if mask.keep(density) {
			out[i] = v / density
		}
	}
	return out
}
