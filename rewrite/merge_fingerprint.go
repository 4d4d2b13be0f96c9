package rewrite

import (
	"math"
	"math/rand/v2"

	"github.com/peftonnx/peftonnx/graph"
)

// MergeMetadataKey is the model metadata_props key under which Merge and
// MergeAdapter keep a fingerprint of each update they folded into a float
// weight, so that Unmerge can tell the adapter that was merged from any
// other. A merged weight W + s·A·B does not say which A and B were added:
// subtracting another adapter's update gives a model that runs, but is
// neither the base nor the adapted one. The fingerprint is mergeProbes
// numbers qₖᵀ·Δ·pₖ of the update Δ = s·A·B [in, out], for fixed ±1 vectors
// qₖ and pₖ that depend only on k and the shape. Δ is the update against
// the weight's original value: for a layer started from its weights
// (PiSSA, OLoRA: W_res = W − s·A₀·B₀) it is s·(A·B − A₀·B₀), the delta of
// the converted adapter that ExtractAdapter returns, which is the one
// Unmerge is given. Another adapter matches all of them only by accident
// (the chance of a random update landing within the tolerance is far below
// 1e-20). Merges stack as DoRA's norms do (DoRAMetadataKey): Unmerge takes
// the latest fingerprint of a weight and removes it. A model merged before
// peftonnx kept fingerprints has none, and Unmerge takes any adapter of
// the right shapes for it, as it did.
const MergeMetadataKey = "peftonnx.merges"

// mergeProbes is how many numbers make a fingerprint.
const mergeProbes = 4

// fingerprintTol is how far, relative to Σ|qₖᵀA|·|B·pₖ| (the size of the
// terms of the probe), a probe may move between merge and unmerge: the
// same float32 factors give the same float64 sums up to their order.
const fingerprintTol = 1e-7

// mergeFingerprint is one merged weight's entry.
type mergeFingerprint struct {
	mergedWeight
	Probes []float64 `json:"probes"`
}

// mergeFingerprints is what MergeMetadataKey holds.
type mergeFingerprints = mergeStack[mergeFingerprint]

// readMergeFingerprints returns m's merge fingerprints (none when it has
// no entry).
func readMergeFingerprints(m *graph.Model) (mergeFingerprints, error) {
	rec, err := readMergeStack[mergeFingerprint](m, MergeMetadataKey)
	if err != nil {
		return mergeFingerprints{}, err
	}
	for _, mg := range rec.Merges {
		if len(mg.Probes) != mergeProbes {
			return mergeFingerprints{}, errorf("%s: model metadata %q: weight %q has %d probes, want %d", modelLabel(m), MergeMetadataKey, mg.Weight, len(mg.Probes), mergeProbes)
		}
	}
	return rec, nil
}

// probeVectors returns the ±1 vectors qₖ [in] and pₖ [out] of probe k.
func probeVectors(k, in, out int) (q, p []float64) {
	rng := rand.New(rand.NewPCG(uint64(k)+1, 0x9e3779b97f4a7c15))
	sign := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = 1
			if rng.Uint64()&1 == 1 {
				v[i] = -1
			}
		}
		return v
	}
	return sign(in), sign(out)
}

// fingerprint returns f's probes qₖᵀ·Δ·pₖ and the size of their terms
// Σ|qₖᵀA|·|B·pₖ|, for Δ = s·(A·B − A₀·B₀) (A₀·B₀ only for a layer started
// from its weights).
func (f fold) fingerprint() (probes, sizes []float64) {
	in, out := int(f.l.In), int(f.l.Out)
	for k := 0; k < mergeProbes; k++ {
		q, p := probeVectors(k, in, out)
		v, size := probe(f.a, f.b, f.rk, q, p)
		if f.initialA != nil {
			v0, size0 := probe(f.initialA, f.initialB, len(f.initialA)/in, q, p)
			v, size = v-v0, size+size0
		}
		probes = append(probes, f.scale*v)
		sizes = append(sizes, math.Abs(f.scale)*size)
	}
	return probes, sizes
}

// probe returns qᵀ·A·B·p and Σⱼ|(qᵀA)ⱼ|·|(B·p)ⱼ| for A [in, rk] and
// B [rk, out].
func probe(a, b []float32, rk int, q, p []float64) (v, size float64) {
	out := len(p)
	for j := 0; j < rk; j++ {
		var qa, bp float64
		for i, qi := range q {
			qa += qi * float64(a[i*rk+j])
		}
		for o, po := range p {
			bp += float64(b[j*out+o]) * po
		}
		v += qa * bp
		size += math.Abs(qa) * math.Abs(bp)
	}
	return v, size
}

// recordFingerprint returns the entry of fold f merged into weight.
func (f fold) recordFingerprint(weight string) mergeFingerprint {
	probes, _ := f.fingerprint()
	return mergeFingerprint{mergedWeight{Weight: weight, Module: f.module}, probes}
}

// checkFingerprint checks that fold f, of the adapter being unmerged, is
// the update that rec's latest merge of its weight folded in, and removes
// that entry from rec. A model without fingerprints (rec empty) passes.
func (f fold) checkFingerprint(rec *mergeFingerprints) error {
	if len(rec.Merges) == 0 {
		return nil
	}
	l := f.l
	i := rec.latest(l.Weight)
	if i < 0 {
		return layerErr(l, "the model records the adapters merged into it (metadata %q), and none was merged into weight %q: module %s of this adapter was not merged with this model", MergeMetadataKey, l.Weight, f.module)
	}
	got, sizes := f.fingerprint()
	for k, want := range rec.Merges[i].Probes {
		if math.Abs(got[k]-want) > fingerprintTol*max(sizes[k], math.Abs(want)) || math.IsNaN(got[k]) {
			return layerErr(l, "weight %q was not merged with this adapter: its update s·A·B differs from the one merged (fingerprint in metadata %q, probe %d: %.6g, this adapter's %.6g); give the adapter that was merged", l.Weight, MergeMetadataKey, k, want, got[k])
		}
	}
	rec.Merges = append(rec.Merges[:i], rec.Merges[i+1:]...)
	return nil
}

// MergedModules returns the modules whose updates m's merges recorded
// (MergeMetadataKey), in the order they were merged, each once; none for
// a model merged without fingerprints or never merged.
func MergedModules(m *graph.Model) ([]string, error) {
	rec, err := readMergeFingerprints(m)
	if err != nil {
		return nil, err
	}
	var mods []string
	seen := map[string]bool{}
	for _, mg := range rec.Merges {
		if !seen[mg.Module] {
			seen[mg.Module] = true
			mods = append(mods, mg.Module)
		}
	}
	return mods, nil
}
