package rewrite

import (
	"runtime"
	"sync"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Merge folds every LoRA branch of m into its base weight,
// W' = W + s·A·B, computed in float32 and stored in W's element type, and
// removes every node, initializer, input and metadata entry that injection
// added. The merged model has exactly the base model's nodes and
// initializers, and runs as fast; its metadata gains a fingerprint of each
// update (MergeMetadataKey), with which Unmerge refuses another adapter. A weight reached through Transpose, Cast
// or Gemm's transB is updated where it is stored; under a Gemm with alpha
// ≠ 1 the update is divided by alpha. With AsInputs the defaults are rank
// 0, so Merge restores the base model; use MergeAdapter to bake an adapter
// into it. Merge checks every site before it changes anything. A weight
// behind DequantizeLinear (a QDQ model) is refused, since the merge cannot
// be exact in its integer type, unless the option Dequantize says to
// merge into a dequantized float weight. So is an int4 (MatMulNBits)
// layer, which Dequantize makes a float MatMul and Requantize rounds back
// into int4 (merge_nbits.go; MergeWith reports what they did).
func Merge(m *graph.Model, opts ...Option) error {
	_, err := MergeWith(m, opts...)
	return err
}

// CheckMerge returns the error that Merge (MergeWith) with opts would
// give on m as it is now, and changes nothing: m carries no LoRA branch,
// or a weight cannot take its update (int4 or QDQ without Dequantize or
// Requantize, shared with other nodes, under a Gemm with alpha 0). A
// caller that merges after training checks first, so that a refusal
// comes before the work; what only trained factors can show (an update
// that overflows the weight's type) Merge alone finds.
func CheckMerge(m *graph.Model, opts ...Option) error {
	o, err := mergeOptions(opts)
	if err != nil {
		return err
	}
	_, _, err = planMerge(m, o)
	return err
}

// planMerge reads m's LoRA record and plans the folds of its branches,
// checking every site; it changes nothing.
func planMerge(m *graph.Model, o options) (record, []fold, error) {
	rec, err := mustRecord(m)
	if err == nil {
		err = checkRecord(m, rec)
	}
	if err == nil {
		err = checkRemoval(m, rec)
	}
	if err != nil {
		return rec, nil, err
	}
	folds, err := planSiteFolds(m, rec, o)
	return rec, folds, err
}

// fold is one module's update s·A·Bfull, ready to add to its weight.
type fold struct {
	l      Linear
	module string
	a, b   []float32 // A [in, r·k] and Bfull [r·k, out]
	rk     int
	scale  float64
	// magnitude is DoRA's m [out]: after W + s·A·B, each output feature is
	// rescaled to it (rescaleColumns); nil for plain LoRA.
	magnitude []float32
	// initialA [in, r] and initialB [r, out] are A₀ and B₀ of a layer
	// started from its weights (PiSSA, OLoRA), whose update against the
	// original weight is s·(A·B − A₀·B₀) (merge_fingerprint.go); nil
	// otherwise.
	initialA, initialB []float32
}

// planSiteFolds reads the factors of every module of rec and checks that its
// weight can be changed in place.
func planSiteFolds(m *graph.Model, rec record, o options) ([]fold, error) {
	var folds []fold
	seen := map[string]bool{}
	sitesOf := map[string]int{}
	for _, s := range rec.Sites {
		sitesOf[s.Module]++
	}
	for _, s := range rec.Sites {
		if seen[s.Module] {
			continue
		}
		seen[s.Module] = true
		l, err := siteLayer(m, s)
		if err != nil {
			return nil, err
		}
		l.Module = s.Module
		if l.SharedWeight && s.Magnitude != "" {
			l.SharedWeight = sharedBeyondBranches(m, l, rec)
		}
		a, err := factor(m, s.A)
		if err != nil {
			return nil, err
		}
		b, err := factor(m, s.B)
		if err != nil {
			return nil, err
		}
		if len(a) == 0 {
			continue // rank 0: nothing to fold
		}
		if l.SharedWeight && sitesOf[s.Module] < 2 {
			return nil, layerErr(l, "weight %q is shared with other nodes; merging would change them too", l.Weight)
		}
		if l.Alpha == 0 {
			return nil, layerErr(l, "Gemm has alpha 0: an update of its weight has no effect")
		}
		if err := checkFactorValues(s.A, a); err != nil {
			return nil, err
		}
		if err := checkFactorValues(s.B, b); err != nil {
			return nil, err
		}
		if err := checkMergeable(m, l, o); err != nil {
			return nil, err
		}
		rk := len(a) / int(s.In)
		r := rk / s.Parts()
		f := fold{l: l, module: s.Module, a: a, b: siteFullB(b, r, s), rk: rk, scale: scaleInGraph(s)}.asMatrixFold()
		if err := f.checkOverflow(m); err != nil && !l.Quantized() {
			return nil, err
		}
		if s.Magnitude != "" {
			if f.magnitude, err = factor(m, s.Magnitude); err != nil {
				return nil, err
			}
		}
		if s.InitialA != "" {
			if f.initialA, err = factor(m, s.InitialA); err != nil {
				return nil, err
			}
			if f.initialB, err = factor(m, s.InitialB); err != nil {
				return nil, err
			}
		}
		folds = append(folds, f)
	}
	return folds, nil
}

// scaleInGraph returns the scaling the graph applies to a site: s, or 1
// with AsInputs, where the fed B carries it.
func scaleInGraph(s Site) float64 {
	if s.AsInputs {
		return 1
	}
	return s.Scale
}

// factor reads a LoRA factor's values from its initializer.
func factor(m *graph.Model, name string) ([]float32, error) {
	t := m.Initializer(name)
	if t == nil {
		return nil, errorf("LoRA factor %q has no initializer", name)
	}
	v, err := m.Float32s(t)
	if err != nil {
		return nil, errorf("LoRA factor %q: %w", name, err)
	}
	return v, nil
}

// apply adds sign·scale·A·Bfull to the layer's stored weight.
func (f fold) apply(m *graph.Model, sign float64) error {
	l := f.l
	w := m.Initializer(l.Weight)
	vals, err := m.Float32s(w)
	if err != nil {
		return layerErr(l, "%w", err)
	}
	f.addTo(vals, l.WeightTransposed, sign*f.scale/float64(l.Alpha))
	if err := graph.SetFloat32s(w, vals); err != nil {
		return layerErr(l, "%w", err)
	}
	return nil
}

// addTo adds c·A·Bfull to vals, the layer's [In, Out] matrix, or its
// [Out, In] transpose where transposed is set.
func (f fold) addTo(vals []float32, transposed bool, c float64) {
	in, out := int(f.l.In), int(f.l.Out)
	// Rows of the update are independent: share them among the CPUs.
	workers := min(runtime.GOMAXPROCS(0), max(1, in/64))
	var wg sync.WaitGroup
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			row := make([]float64, out)
			for i := lo; i < hi; i++ {
				clear(row)
				for k := 0; k < f.rk; k++ {
					aik := float64(f.a[i*f.rk+k])
					if aik == 0 {
						continue
					}
					for j, bkj := range f.b[k*out : (k+1)*out] {
						row[j] += aik * float64(bkj)
					}
				}
				for j, d := range row {
					if transposed {
						vals[j*in+i] = float32(float64(vals[j*in+i]) + c*d)
					} else {
						vals[i*out+j] = float32(float64(vals[i*out+j]) + c*d)
					}
				}
			}
		}(wk*in/workers, (wk+1)*in/workers)
	}
	wg.Wait()
}

// removeBranches deletes what injection added and routes each layer's
// readers back to its base node, and the base node back to its input. A base initializer that only the
// branches read now goes too: the packed tensors of an int4 layer that a
// merge made float, which its DoRA norm still read.
func removeBranches(m *graph.Model, rec record) error {
	var drop []*onnxpb.NodeProto
	var read []string
	names := append([]string(nil), rec.SharedNodes...)
	for _, s := range rec.Sites {
		names = append(names, s.Nodes...)
	}
	for _, name := range names {
		if n := m.NodeByName(name); n != nil {
			drop = append(drop, n)
			read = append(read, n.Input...)
		}
	}
	m.RemoveNodes(drop...)
	// Inputs first: an int4 DoRA site's input may be an earlier site's
	// sum, which the loop below routes back.
	for _, s := range rec.Sites {
		if s.BaseInput != "" {
			m.ReplaceUses(s.BaseInput, s.Input)
		}
	}
	renamed := false
	for _, s := range rec.Sites {
		if s.BaseOutput != s.Output {
			if base := m.Producer(s.BaseOutput); base != nil {
				base.Output[0] = s.Output
				renamed = true
			}
			continue
		}
		m.ReplaceUses(s.Sum, s.Output)
	}
	if renamed {
		m.Reindex()
	}
	for _, name := range read {
		if name != "" && m.Initializer(name) != nil && len(m.Consumers(name)) == 0 && m.Input(name) == nil && !m.IsGraphOutput(name) {
			m.RemoveInitializer(name)
		}
	}
	inits := append([]string(nil), rec.Shared...)
	for _, s := range rec.Sites {
		inits = append(inits, s.A, s.B)
		if s.Magnitude != "" {
			inits = append(inits, s.Magnitude)
		}
		inits = append(inits, s.Initializers...)
	}
	for _, name := range inits {
		m.RemoveInitializer(name)
		m.RemoveInput(name)
	}
	return writeRecord(m, nil)
}

// MergeAdapter folds adapter ad into base's weights, as Apply followed by
// Merge would, without building the branches. Modules are matched as Apply
// matches them; ad's Extra tensors (trained biases and modules) replace the
// base's. Nothing changes when a module is missing or a shape disagrees.
// Dequantize is taken as by Merge.
func MergeAdapter(base *graph.Model, ad *adapter.Adapter, opts ...Option) error {
	_, err := MergeAdapterWith(base, ad, opts...)
	return err
}

// planAdapterFolds maps ad's modules to base's layers and prepares their
// updates, checking every shape.
func planAdapterFolds(base *graph.Model, ad *adapter.Adapter, o options) ([]fold, []extraValue, error) {
	if _, ok, err := readRecord(base); err != nil {
		return nil, nil, err
	} else if ok {
		return nil, nil, errorf("%s carries LoRA branches: merge them (Merge) first", modelLabel(base))
	}
	cfg, err := loraConfigOf(ad)
	if err != nil {
		return nil, nil, err
	}
	linears, err := FindLayers(base)
	if err != nil {
		return nil, nil, err
	}
	layers, err := resolveModules(base, linears, ad.Modules())
	if err != nil {
		return nil, nil, err
	}
	var folds []fold
	for _, key := range ad.Modules() {
		l := layers[key]
		s, err := siteFor(&cfg, key, l, false)
		if err != nil {
			return nil, nil, err
		}
		w := ad.Weights[key]
		if err := checkFactors(s, key, l, w); err != nil {
			return nil, nil, err
		}
		if l.SharedWeight {
			return nil, nil, layerErr(l, "weight %q is shared with other nodes; merging would change them too", l.Weight)
		}
		if l.Alpha == 0 {
			return nil, nil, layerErr(l, "Gemm has alpha 0: an update of its weight has no effect")
		}
		if err := checkMergeable(base, l, o); err != nil {
			return nil, nil, err
		}
		mag, err := doraMagnitude(&cfg, key, l, w)
		if err != nil {
			return nil, nil, err
		}
		f := fold{l: l, module: key, a: w.A.Data, b: siteFullB(w.B.Data, s.R, s), rk: int(w.A.Shape[1]), scale: s.Scale, magnitude: mag}.asMatrixFold()
		if err := f.checkOverflow(base); err != nil && !l.Quantized() {
			return nil, nil, err
		}
		folds = append(folds, f)
	}
	extras, err := planExtras(base, linears, ad)
	if err != nil {
		return nil, nil, err
	}
	return folds, extras, nil
}

// Unmerge undoes MergeAdapter (or Merge) of adapter ad on m: it subtracts
// s·A·B from each adapted weight and rebuilds the branches with ad's
// weights, as ApplyLoRA does. A merged model no longer holds A and B, so the
// adapter must be given; ExtractAdapter before Merge keeps it. In float16
// or bfloat16 weights the round trip is exact only to the weight's
// precision. A DoRA adapter's rescaling is undone with the norms Merge
// kept (DoRAMetadataKey); a model without them is refused. An adapter
// whose update is not the one merged (MergeMetadataKey) is refused, where
// the model keeps the fingerprints. Nothing changes when a module is
// missing, a shape disagrees or the adapter is the wrong one.
func Unmerge(m *graph.Model, ad *adapter.Adapter, opts ...Option) ([]Site, Summary, error) {
	folds, _, err := planAdapterFolds(m, ad, options{unmerge: true})
	if err != nil {
		return nil, Summary{}, err
	}
	doras, err := readDoRARecord(m)
	if err != nil {
		return nil, Summary{}, err
	}
	fps, err := readMergeFingerprints(m)
	if err != nil {
		return nil, Summary{}, err
	}
	for _, f := range folds {
		if err := f.checkFingerprint(&fps); err != nil {
			return nil, Summary{}, err
		}
	}
	// Keep the weights, to put them back if anything fails.
	saved := map[string][]float32{}
	for _, f := range folds {
		if _, ok := saved[f.l.Weight]; ok {
			continue
		}
		v, err := m.Float32s(m.Initializer(f.l.Weight))
		if err != nil {
			return nil, Summary{}, layerErr(f.l, "%w", err)
		}
		saved[f.l.Weight] = v
	}
	restore := func() {
		for name, v := range saved {
			_ = graph.SetFloat32s(m.Initializer(name), v) // best effort
		}
	}
	for _, f := range folds {
		if f.magnitude != nil {
			if err := f.undoDoRARescale(m, &doras); err != nil {
				restore()
				return nil, Summary{}, err
			}
		}
		if err := f.apply(m, -1); err != nil {
			restore()
			return nil, Summary{}, err
		}
	}
	sites, sum, err := ApplyLoRA(m, ad, opts...)
	if err == nil {
		err = doras.write(m, DoRAMetadataKey)
	}
	if err == nil {
		err = fps.write(m, MergeMetadataKey)
	}
	if err != nil {
		restore()
		return nil, Summary{}, err
	}
	return sites, sum, nil
}
