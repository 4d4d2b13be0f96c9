package rewrite

import (
	"math"

	"github.com/peftonnx/peftonnx/graph"
)

// DoRAMetadataKey is the model metadata_props key under which Merge and
// MergeAdapter keep, for each DoRA layer they merged, the norm ‖V[:, j]‖
// of V = α·W + s·A·B per output feature. The merged weight m·V/‖V‖ does
// not determine it; with it Unmerge recovers W exactly:
//
//	V[:, j] = α·W'[:, j] · ‖V[:, j]‖ / m[j],  W = (V − s·A·B)/α
//
// Merges stack: a weight merged twice keeps two entries, and Unmerge takes
// the latest. A model merged before peftonnx kept them has none, and
// Unmerge refuses it.
const DoRAMetadataKey = "peftonnx.dora_norms"

// doraMerge is one merged DoRA layer: its weight initializer, module and
// ‖V‖ per output feature.
type doraMerge struct {
	mergedWeight
	Norm []float64 `json:"norm"`
}

// doraRecord is what DoRAMetadataKey holds.
type doraRecord = mergeStack[doraMerge]

// readDoRARecord returns m's merged DoRA norms (none when it has no entry).
func readDoRARecord(m *graph.Model) (doraRecord, error) {
	return readMergeStack[doraMerge](m, DoRAMetadataKey)
}

// doraMagnitudeTol is how far, relatively, a merged column's norm may be
// from |m[j]| for Unmerge to take it as this adapter's merge: float32
// rounding of the merged weight stays far below it, a different adapter or
// a weight changed since goes far above.
const doraMagnitudeTol = 1e-3

// undoDoRARescale turns the merged weight of fold f back into W + (s/α)·A·B
// with the norms of rec's latest merge of it, which it removes from rec. It
// checks that the weight's column norms are the adapter's magnitudes.
func (f fold) undoDoRARescale(m *graph.Model, rec *doraRecord) error {
	l := f.l
	i := rec.latest(l.Weight)
	if i < 0 {
		return layerErr(l, "use_dora: the model keeps no ‖W + s·A·B‖ of weight %q (metadata %q), which unmerging DoRA needs: the merged weight m·V/‖V‖ keeps V's direction but not its norm, so W cannot be recovered. The model was merged before peftonnx kept the norms, or not with this adapter; keep the base model and apply the adapter to it", l.Weight, DoRAMetadataKey)
	}
	mg := rec.Merges[i]
	if len(mg.Norm) != int(l.Out) {
		return layerErr(l, "use_dora: metadata %q holds %d norms for weight %q; the layer has %d output features", DoRAMetadataKey, len(mg.Norm), l.Weight, l.Out)
	}
	have, err := weightNorms(m, l)
	if err != nil {
		return err
	}
	c := make([]float64, l.Out)
	for j, n := range mg.Norm {
		mj := float64(f.magnitude[j])
		if mj == 0 || !(n > 0) || math.IsInf(n, 0) {
			return layerErr(l, "use_dora: output feature %d has magnitude %v and stored norm %v; its merged weight cannot be undone", j, mj, n)
		}
		if math.Abs(have[j]-math.Abs(mj)) > doraMagnitudeTol*math.Abs(mj) {
			return layerErr(l, "use_dora: output feature %d of weight %q has norm %.6g, but the adapter's magnitude is %.6g: the weight was not merged with this adapter, or changed since", j, l.Weight, have[j], mj)
		}
		c[j] = n / mj
	}
	if err := scaleColumns(m, l, c); err != nil {
		return err
	}
	rec.Merges = append(rec.Merges[:i], rec.Merges[i+1:]...)
	return nil
}
