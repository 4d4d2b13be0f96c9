package rewrite

import (
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// ExtractAdapter returns the adapter that an adapted model carries (for
// export-adapter and save_pretrained): its config as injected, each
// module's A and B in graph layout, and the base tensors that train along
// (Summary.Extra) under their adapter names, "<module>.weight" in
// nn.Linear's [out, in] layout (or [in, out] with FanInFanOut) and
// "<module>.bias". A model whose factors are graph inputs (AsInputs) holds
// no adapter: that is an error. A site started from the weights (PiSSA,
// OLoRA) comes out as the plain rank-2r delta on the original weight
// (init_pissa.go).
//
// ExtractAdapter is Extract for LoRA only: a prefixed model is an error.
func ExtractAdapter(m *graph.Model) (*adapter.Adapter, error) {
	rec, err := mustRecord(m)
	if err != nil {
		return nil, err
	}
	return extractLoRA(m, rec, tensorReader(m, nil))
}

// extractLoRA returns the LoRA adapter that rec describes, with the values
// of its tensors from read.
func extractLoRA(m *graph.Model, rec record, read func(name string) ([]float32, error)) (*adapter.Adapter, error) {
	if err := checkRecord(m, rec); err != nil {
		return nil, err
	}
	ad := adapter.NewLoRA(rec.Config)
	converted := false
	for _, s := range rec.Sites {
		if _, done := ad.Weights[s.Module]; done {
			continue
		}
		if s.AsInputs {
			return nil, errorf("%s: layer %q takes its LoRA factors as graph inputs; the model holds no adapter to extract", modelLabel(m), s.Module)
		}
		a, b, err := readPair(read, s.A, s.B)
		if err != nil {
			return nil, err
		}
		if err := checkBranchOverflow(s, s.Module, a, b); err != nil {
			return nil, errorf("%s: %w", modelLabel(m), err)
		}
		r := int64(s.R)
		if s.InitialA != "" {
			// Started from the weights: the plain delta on the original W.
			a0, b0, err := readPair(read, s.InitialA, s.InitialB)
			if err != nil {
				return nil, err
			}
			a, b = convertedWeights(s, a, b, a0, b0)
			r, converted = 2*r, true
		}
		dt := adapterType(s.DType)
		w := adapter.LoRAWeights{
			A: &adapter.Tensor{DType: dt, Shape: s.AShape(r), Data: a},
			B: &adapter.Tensor{DType: dt, Shape: s.BShape(r), Data: b},

			Embedding: s.Kind == KindEmbedding,
		}
		if s.Magnitude != "" {
			mag, err := read(s.Magnitude)
			if err != nil {
				return nil, err
			}
			w.Magnitude = magnitudeTensor(s, mag)
		}
		ad.Weights[s.Module] = w
	}
	if converted {
		*ad.LoRA = convertedConfig(rec.Config)
	}
	if len(rec.Trainable) > 0 {
		linears, err := FindLinears(m)
		if err != nil {
			return nil, err
		}
		for _, e := range rec.Trainable {
			t := m.Initializer(e.Name)
			if t == nil {
				return nil, errorf("%s: trainable tensor %q has no initializer", modelLabel(m), e.Name)
			}
			vals, err := read(e.Name)
			if err != nil {
				return nil, err
			}
			shape := slices.Clone(t.Dims)
			for _, l := range linears {
				if e.Key != l.Module+".weight" || e.Name != l.Weight {
					continue
				}
				// To nn.Linear's [out, in], or [in, out] with FanInFanOut.
				want := []int64{l.Out, l.In}
				if rec.Config.FanInFanOut {
					want = []int64{l.In, l.Out}
				}
				if !slices.Equal(shape, want) {
					vals = transpose(vals, int(shape[0]), int(shape[1]))
				}
				shape = want
				break
			}
			ad.Extra[e.Key] = &adapter.Tensor{DType: adapterType(graph.TypeOf(t)), Shape: shape, Data: vals}
		}
	}
	if err := ad.Validate(); err != nil {
		return nil, errorf("%s: extracted adapter: %w", modelLabel(m), err)
	}
	return ad, nil
}

// readPair reads the tensors named a and b with read: a site's A and B,
// or the A and B it started from.
func readPair(read func(name string) ([]float32, error), a, b string) (av, bv []float32, err error) {
	if av, err = read(a); err == nil {
		bv, err = read(b)
	}
	return av, bv, err
}

// tensorReader returns a function that reads the values of m's
// initializer name as float32: from values where it holds the name,
// rounded to the initializer's element type as graph.SetFloat32s stores
// them, else from the initializer. Either way the slice is new.
func tensorReader(m *graph.Model, values map[string][]float32) func(name string) ([]float32, error) {
	return func(name string) ([]float32, error) {
		t := m.Initializer(name)
		if t == nil {
			return nil, errorf("%s: adapter tensor %q has no initializer", modelLabel(m), name)
		}
		if v, ok := values[name]; ok {
			stored := &onnxpb.TensorProto{Name: name, DataType: t.DataType, Dims: t.Dims}
			if err := graph.SetFloat32s(stored, v); err != nil {
				return nil, errorf("%s: adapter tensor %q: %w", modelLabel(m), name, err)
			}
			t = stored
		}
		v, err := m.Float32s(t)
		if err != nil {
			return nil, errorf("%s: adapter tensor %q: %w", modelLabel(m), name, err)
		}
		return v, nil
	}
}
