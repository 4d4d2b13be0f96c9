package rewrite

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
)

// Merging into a quantized (MatMulNBits) layer cannot keep both the int4
// form and the exact sum W + s·A·B: the sum falls between the codes. There
// are two honest ways, and the options Dequantize and Requantize choose:
//
//   - Dequantize: the layer becomes a float MatMul of its
//     activation's type reading W' = dequantize(B) + s·A·B (an Add after
//     it where the layer has a bias). The merged model computes what the
//     adapted one does, to float rounding, at the float model's size.
//   - Requantize: W' is rounded to nearest back into the layer's own
//     layout (bits, block size, zero points or none), and the MatMulNBits
//     node stays: the merged model is int4 and keeps the base's nodes, but
//     each layer now differs from the adapted one by the rounding error,
//     which QuantizedMerge reports (against W' and against the update).
//     The rounding loses the update: Unmerge refuses an int4 layer.
//
// A DoRA layer's W' is m·V/‖V‖ with V = dequantize(B) + s·A·B, either
// way; the dequantized merge keeps ‖V‖ (DoRAMetadataKey) as a float merge
// does, so that Unmerge restores the adapted model (with a float layer).

// Requantize makes Merge and MergeAdapter round each merged int4
// (MatMulNBits) layer back into its own layout, keeping the node; with
// Dequantize such a layer becomes a float MatMul. Without either, merging
// into an int4 layer is refused, as into an int8 (QDQ) weight.
func Requantize() Option {
	return func(o *options) error {
		o.requantize = true
		return nil
	}
}

// QuantizedMerge reports one MatMulNBits layer that a merge changed.
type QuantizedMerge struct {
	// Module is the layer's module name.
	Module string
	// Node and Weight are the layer's node and weight after the merge:
	// the MatMulNBits node and its packed B with Requantize, else the
	// float MatMul and its float initializer.
	Node, Weight string
	// Requantized reports that the layer stayed int4.
	Requantized bool
	// RelError is ‖Wq − W'‖/‖W'‖ (Frobenius) for the requantized weight Wq
	// and the exact merged weight W' (W + s·A·B; DoRA's m·V/‖V‖);
	// UpdateRelError is ‖Wq − W'‖/‖W' − W‖, the error measured against the
	// update itself (above 1, rounding changes the layer more than the
	// adapter does). MaxAbsError is the
	// largest |Wq − W'|. All are 0 for a dequantized merge, which is exact
	// to float rounding.
	RelError, UpdateRelError, MaxAbsError float64
}

// MergeWith is Merge that reports each int4 layer it changed.
func MergeWith(m *graph.Model, opts ...Option) ([]QuantizedMerge, error) {
	return mergeFolds(m, opts, func(o options) ([]fold, func() error, error) {
		rec, folds, err := planMerge(m, o)
		return folds, func() error { return removeBranches(m, rec) }, err
	})
}

// MergeAdapterWith is MergeAdapter that reports each int4 layer it
// changed.
func MergeAdapterWith(base *graph.Model, ad *adapter.Adapter, opts ...Option) ([]QuantizedMerge, error) {
	return mergeFolds(base, opts, func(o options) ([]fold, func() error, error) {
		folds, extras, err := planAdapterFolds(base, ad, o)
		return folds, func() error { return setExtras(base, extras) }, err
	})
}

// mergeFolds is every merge: it reads opts, plans the folds into m's
// weights with plan, applies them, and calls the finish that plan
// returned once they are in (removing the branches, or setting the
// adapter's extra values). It reports each int4 layer it changed.
func mergeFolds(m *graph.Model, opts []Option, plan func(options) (folds []fold, finish func() error, err error)) ([]QuantizedMerge, error) {
	o, err := mergeOptions(opts)
	if err != nil {
		return nil, err
	}
	folds, finish, err := plan(o)
	if err != nil {
		return nil, err
	}
	rep, err := applyFolds(m, folds, o)
	if err != nil {
		return nil, err
	}
	return rep, finish()
}

// mergeOptions collects the options of a merge.
func mergeOptions(opts []Option) (options, error) {
	o, err := applyOptions(opts, loraOptions)
	if err == nil && o.dequantize && o.requantize {
		err = errorf("Dequantize and Requantize exclude each other: an int4 layer is merged into a float weight or back into int4")
	}
	return o, err
}

// applyFolds adds each fold to its weight: a float one (a QDQ weight made
// float first where o says so), or an int4 one as o says.
func applyFolds(m *graph.Model, folds []fold, o options) ([]QuantizedMerge, error) {
	var rep []QuantizedMerge
	var merges []doraMerge
	var fps []mergeFingerprint
	for _, f := range folds {
		if f.l.Quantized() {
			q, norms, err := f.applyQuantized(m, o.requantize)
			if err != nil {
				return nil, err
			}
			rep = append(rep, q)
			if !q.Requantized {
				fps = append(fps, f.recordFingerprint(q.Weight))
				if norms != nil {
					merges = append(merges, doraMerge{mergedWeight{Weight: q.Weight, Module: f.module}, norms})
				}
			}
			continue
		}
		f, err := f.dequantized(m)
		if err != nil {
			return nil, err
		}
		if err := f.apply(m, 1); err != nil {
			return nil, err
		}
		if f.magnitude != nil {
			norms, err := f.rescaleColumns(m)
			if err != nil {
				return nil, err
			}
			merges = append(merges, doraMerge{mergedWeight{Weight: f.l.Weight, Module: f.module}, norms})
		}
		fps = append(fps, f.recordFingerprint(f.l.Weight))
	}
	if err := pushMerges(m, MergeMetadataKey, fps); err != nil {
		return nil, err
	}
	return rep, pushMerges(m, DoRAMetadataKey, merges)
}

// checkNBitsMergeable refuses to merge into an int4 layer unless o says
// how, and to unmerge from one.
func checkNBitsMergeable(l Linear, o options) error {
	if o.unmerge {
		return layerErr(l, "weight %q is int4 (MatMulNBits), and nothing merged into int4 can be taken out: a requantized merge (Requantize, merge --requantize) rounded W + s·A·B (DoRA: m·V/‖V‖) onto the int4 grid, which loses the update; a model merged with Dequantize (merge --dequantize) has float weights, which unmerge", l.Weight)
	}
	if o.dequantize || o.requantize {
		return nil
	}
	return layerErr(l, "weight %q is int4 (MatMulNBits): W + s·A·B is not on its quantization grid, so a merge cannot be exact in int4; keep the branch, merge into a float weight (Dequantize, peftonnx merge --dequantize: exact), or round it back into int4 (Requantize, --requantize: reports its error)", l.Weight)
}

// applyQuantized merges f into its MatMulNBits layer: rounded back into
// int4 with requantize, else into a float MatMul. The merged weight is
// dequantize(B) + s·A·B, and for DoRA its columns rescaled to the
// magnitudes, m·V/‖V‖; norms is then ‖V‖ per output feature (nil for
// LoRA).
func (f fold) applyQuantized(m *graph.Model, requantize bool) (rep QuantizedMerge, norms []float64, err error) {
	l := f.l
	w, err := quant.ReadNode(m, l.Node)
	if err != nil {
		return QuantizedMerge{}, nil, layerErr(l, "%w", err)
	}
	merged, err := w.Dequantize()
	if err != nil {
		return QuantizedMerge{}, nil, layerErr(l, "%w", err)
	}
	var base []float32
	if requantize {
		base = slices.Clone(merged)
	}
	f.addTo(merged, false, f.scale)
	if f.magnitude != nil {
		if norms, err = f.rescaleMatrix(merged); err != nil {
			return QuantizedMerge{}, nil, err
		}
	}
	if !requantize {
		node, weight := dequantizeNode(m, l, w.Bits, merged)
		return QuantizedMerge{Module: f.module, Node: node, Weight: weight}, norms, nil
	}
	q, err := w.Requantize(merged)
	if err != nil {
		return QuantizedMerge{}, nil, layerErr(l, "%w", err)
	}
	got, err := q.Dequantize()
	if err != nil {
		return QuantizedMerge{}, nil, layerErr(l, "%w", err)
	}
	rep = QuantizedMerge{Module: f.module, Node: l.NodeName, Weight: l.Weight, Requantized: true}
	var errSq, refSq, updSq float64
	for i, v := range merged {
		d := float64(got[i]) - float64(v)
		u := float64(v) - float64(base[i])
		errSq, refSq, updSq = errSq+d*d, refSq+float64(v)*float64(v), updSq+u*u
		rep.MaxAbsError = max(rep.MaxAbsError, math.Abs(d))
	}
	rep.RelError, rep.UpdateRelError = safeRatio(errSq, refSq), safeRatio(errSq, updSq)
	names := quant.TensorNames{B: l.Node.Input[quant.InputB], Scales: l.Node.Input[quant.InputScales]}
	if len(l.Node.Input) > quant.InputZeroPoints {
		names.ZeroPoints = l.Node.Input[quant.InputZeroPoints]
	}
	tensors, err := q.Tensors(names)
	if err != nil {
		return QuantizedMerge{}, nil, layerErr(l, "%w", err)
	}
	for _, t := range tensors {
		m.RemoveInitializer(t.Name)
		m.AddInitializer(t)
	}
	return rep, nil, nil
}

// safeRatio returns √(num/den), or 0 where den is 0.
func safeRatio(num, den float64) float64 {
	if den == 0 {
		return 0
	}
	return math.Sqrt(num / den)
}

// dequantizeNode turns l's MatMulNBits node into a MatMul of l's type
// that reads vals, the merged float weight [K, N]; a bias input becomes
// an Add after it. The node keeps its place and output; it
// and its weight are named as before quantization ("…/MatMul_Q4" →
// "…/MatMul", "….weight_Q4" → "….weight") where those names are free.
// The packed tensors go where nothing else reads them. It returns the
// node's and the weight's new names.
func dequantizeNode(m *graph.Model, l Linear, bits int, vals []float32) (node, weight string) {
	n := l.Node
	suffix := "_Q" + strconv.Itoa(bits)
	unquantized := func(name string) string {
		if base := strings.TrimSuffix(name, suffix); base != name && base != "" && !m.HasName(base) {
			return base
		}
		return m.UniqueName(name + "_float")
	}
	weight = unquantized(n.Input[quant.InputB])
	m.AddInitializer(graph.NewFloat32Tensor(weight, l.DType, []int64{l.In, l.Out}, vals))
	old := slices.Clone(n.Input)
	if n.Name != "" {
		n.Name = unquantized(n.Name)
	}
	n.OpType, n.Domain, n.Attribute = "MatMul", "", nil
	n.Input = []string{old[quant.InputA], weight}
	bias := ""
	if len(old) > quant.InputBias {
		bias = old[quant.InputBias]
	}
	if bias != "" {
		y := n.Output[0]
		n.Output[0] = m.UniqueName(y + "/matmul")
		add := &onnxpb.NodeProto{OpType: "Add", Input: []string{n.Output[0], bias}, Output: []string{y}}
		if n.Name != "" {
			add.Name = m.UniqueName(strings.TrimSuffix(n.Name, "/MatMul") + "/Add")
		}
		g := m.Graph()
		i := slices.Index(g.Node, n)
		g.Node = slices.Insert(g.Node, i+1, add)
	}
	m.Reindex()
	for _, name := range old[quant.InputB:] {
		if name != "" && name != bias && len(m.Consumers(name)) == 0 && m.Input(name) == nil {
			m.RemoveInitializer(name)
		}
	}
	return n.Name, weight
}
