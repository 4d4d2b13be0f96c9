package combine

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
)

// Input is one adapter to combine.
type Input struct {
	// Name says where the adapter came from (a path) in messages; ""
	// names it by its position, "adapter 2".
	Name    string
	Adapter *adapter.Adapter
}

// Adapters combines the LoRA adapters of inputs into one by o.Method (see
// the package documentation), leaving the inputs unchanged. Inputs that
// cannot be combined are errors naming the input and the module at fault:
// prefix, DoRA and fused-projection adapters, adapters that train base
// tensors, adapters of different base models, modules whose shapes
// disagree, and, for the methods that work on factors, modules whose
// ranks disagree. The result validates and has scaling 1 in every module.
func Adapters(inputs []Input, o Options) (*adapter.Adapter, error) {
	if err := o.check(len(inputs)); err != nil {
		return nil, err
	}
	c := &combiner{inputs: inputs, o: &o}
	for i := range inputs {
		if err := c.checkInput(i); err != nil {
			return nil, err
		}
	}
	if err := c.checkBase(); err != nil {
		return nil, err
	}
	modules, err := c.gather()
	if err != nil {
		return nil, err
	}
	method := EffectiveMethod(o.Method, len(inputs))
	rank := o.Rank
	if method == SVD && rank == 0 {
		rank = c.largestRank()
	}
	weights := map[string]adapter.LoRAWeights{}
	for _, m := range slices.Sorted(maps.Keys(modules)) {
		parts := modules[m]
		var a, b matrix
		switch method {
		case Cat:
			a, b = catModule(parts)
		case SVD:
			if a, b, err = svdModule(parts, rank); err != nil {
				return nil, errorf("module %q: %w", m, err)
			}
		default:
			if a, b, err = c.factorModule(method, m, parts, newPCGMask(o.Seed, m)); err != nil {
				return nil, err
			}
		}
		weights[m] = adapter.LoRAWeights{A: a.tensor(parts[0].dtype), B: b.tensor(parts[0].dtype), Embedding: parts[0].embedding}
	}
	out := adapter.NewLoRA(c.config(weights))
	out.Weights = weights
	if err := out.Validate(); err != nil {
		return nil, errorf("the combined adapter does not validate: %w", err)
	}
	return out, nil
}

// combiner holds what Adapters works with.
type combiner struct {
	inputs []Input
	o      *Options
}

// part is one input's share of a module.
type part struct {
	input int
	a, b  matrix     // A [in, r], B [r, out]
	coef  float64    // weight times scaling: the delta is coef·A·B
	dtype dtype.Type // of lora_A, the type the result is stored in
	// embedding marks an embedding's factors (HF PEFT's lora_embedding_A/B).
	embedding bool
}

// name returns how messages name input i.
func (c *combiner) name(i int) string {
	if n := c.inputs[i].Name; n != "" {
		return n
	}
	return fmt.Sprintf("adapter %d", i+1)
}

// checkInput refuses what cannot be combined.
func (c *combiner) checkInput(i int) error {
	ad, name := c.inputs[i].Adapter, c.name(i)
	switch {
	case ad == nil:
		return errorf("%s is nil", name)
	case ad.Prefix != nil:
		return errorf("%s is a prefix adapter (%s): combine works on LoRA adapters, and a prompt table is not a weight delta that can be summed", name, ad.Prefix.PEFTType())
	case ad.LoRA == nil:
		return errorf("%s has no LoRA config", name)
	case ad.LoRA.UseDoRA:
		return errorf("%s is a DoRA adapter (use_dora): its magnitude vectors rescale the merged weight's columns, which no combination of LoRA factors expresses", name)
	case !ad.LoRA.EnableLoRAList.IsZero():
		return errorf("%s has fused projections (enable_lora_list): combine works on plain LoRA modules", name)
	case len(ad.Extra) > 0:
		return errorf("%s also trains %d base tensors (%s): they are absolute values, not deltas, and cannot be weighted; combine adapters without biases or modules_to_save", name, len(ad.Extra), firstNames(ad.Extra))
	case len(ad.Weights) == 0:
		return errorf("%s holds a LoRA config but no weights", name)
	}
	if err := ad.Validate(); err != nil {
		return errorf("%s: %w", name, err)
	}
	return checkMatrices(name, ad)
}

// checkMatrices refuses convolution factors, which are not matrices.
func checkMatrices(name string, ad *adapter.Adapter) error {
	for _, m := range ad.Modules() {
		if w := ad.Weights[m]; w.Conv() {
			return errorf("%s: module %q holds a convolution's factors (lora_A %v): combine works on the 2-D factors of linear and embedding layers", name, m, w.A.Shape)
		}
	}
	return nil
}

// checkBase refuses adapters whose configs name different base models or
// revisions.
func (c *combiner) checkBase() error {
	for _, field := range []struct {
		what string
		of   func(*adapter.LoRAConfig) string
	}{
		{"base model", func(l *adapter.LoRAConfig) string { return l.BaseModelName }},
		{"revision", func(l *adapter.LoRAConfig) string { return l.Revision }},
	} {
		first := -1
		for i, in := range c.inputs {
			v := field.of(in.Adapter.LoRA)
			switch {
			case v == "":
			case first < 0:
				first = i
			case v != field.of(c.inputs[first].Adapter.LoRA):
				return errorf("%s is for %s %q and %s for %q: combine adapters of one base", c.name(first), field.what, field.of(c.inputs[first].Adapter.LoRA), c.name(i), v)
			}
		}
	}
	return nil
}

// gather collects each module's parts, in input order, checking that the
// module has one shape in every input that has it.
func (c *combiner) gather() (map[string][]part, error) {
	modules := map[string][]part{}
	for i, in := range c.inputs {
		cfg := in.Adapter.LoRA
		for _, m := range in.Adapter.Modules() {
			w := in.Adapter.Weights[m]
			for _, t := range []struct {
				name string
				t    *adapter.Tensor
			}{{"lora_A", w.A}, {"lora_B", w.B}} {
				if !t.t.DType.Or(dtype.Float32).IsFloat() {
					return nil, errorf("%s: module %q: %s is %s: combine needs floating-point factors", c.name(i), m, t.name, t.t.DType)
				}
			}
			p := part{input: i, a: fromTensor(w.A), b: fromTensor(w.B), coef: c.o.weight(i) * cfg.ScalingFor(m), dtype: w.A.DType.Or(dtype.Float32), embedding: w.Embedding}
			if prev := modules[m]; len(prev) > 0 {
				q := prev[0]
				if q.a.rows != p.a.rows || q.b.cols != p.b.cols {
					return nil, errorf("module %q is [in %d, out %d] in %s but [in %d, out %d] in %s: the adapters are not of one base",
						m, q.a.rows, q.b.cols, c.name(q.input), p.a.rows, p.b.cols, c.name(i))
				}
			}
			modules[m] = append(modules[m], p)
		}
	}
	return modules, nil
}

// largestRank returns PEFT's default svd rank: the largest of each
// input's r and rank_pattern values.
func (c *combiner) largestRank() int {
	r := 0
	for _, in := range c.inputs {
		cfg := in.Adapter.LoRA
		r = max(r, cfg.R)
		for _, v := range cfg.RankPattern {
			r = max(r, v)
		}
	}
	return r
}

// firstNames names the first two tensors of m: "h.0.attn.c_attn.bias, …".
func firstNames(m map[string]*adapter.Tensor) string {
	names := slices.Sorted(maps.Keys(m))
	if len(names) > 2 {
		names = append(names[:2], "…")
	}
	return strings.Join(names, ", ")
}
