package combine

import (
	"math"
	"slices"
)

// pruneMagnitude returns t with all but its int(density·len(t)) largest
// magnitudes set to zero, as PEFT's magnitude_based_pruning; among equal
// magnitudes the earlier element is kept. A density of 1 or more keeps t.
func pruneMagnitude(t []float64, density float64) []float64 {
	if density >= 1 {
		return t
	}
	out := make([]float64, len(t))
	k := int(density * float64(len(t)))
	if k == 0 {
		return out
	}
	mags := make([]float64, len(t))
	for i, v := range t {
		mags[i] = math.Abs(v)
	}
	sorted := slices.Clone(mags)
	slices.Sort(sorted)
	threshold := sorted[len(sorted)-k] // the k-th largest magnitude
	equal := k                         // how many at the threshold are kept
	for _, m := range mags {
		if m > threshold {
			equal--
		}
	}
	for i, m := range mags {
		switch {
		case m > threshold:
			out[i] = t[i]
		case m == threshold && equal > 0:
			out[i] = t[i]
			equal--
		}
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
