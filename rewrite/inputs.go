package rewrite

import (
	"maps"
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// This file handles ONNX Runtime's own adapter files, whose parameters are
// named after graph inputs of a model that another tool exported with its
// LoRA factors as inputs (lora_param_a, lora_param_b): ONNX Runtime feeds
// each parameter to the input of the same name.

// InputParams returns the parameters of f by name when each of them names
// a graph input of m, as ONNX Runtime's LoRA API feeds them, and ok false
// when some do not or m records LoRA sites of its own (Feeds and Apply
// serve those). A parameter whose element type, rank or fixed sizes
// disagree with its input's is an error.
func InputParams(m *graph.Model, f *adapter.ONNXAdapterFile) (params map[string]*adapter.Tensor, ok bool, err error) {
	if _, recorded, err := readRecord(m); err != nil || recorded || len(f.Params) == 0 {
		return nil, false, err
	}
	for _, p := range f.Params {
		if m.Input(p.Name) == nil {
			return nil, false, nil
		}
	}
	params = map[string]*adapter.Tensor{}
	for i := range f.Params {
		p := &f.Params[i]
		t, err := p.Tensor()
		if err != nil {
			return nil, false, err
		}
		tt := m.Input(p.Name).GetType().GetTensorType()
		if tt == nil {
			return nil, false, errorf("adapter parameter %q: the input of that name of %s is not a tensor", p.Name, modelLabel(m))
		}
		if want := dtype.Type(tt.ElemType); want != p.DataType {
			return nil, false, errorf("adapter parameter %q is %s; input %q of %s is %s", p.Name, p.DataType, p.Name, modelLabel(m), want)
		}
		if s := tt.GetShape(); s != nil {
			if len(s.Dim) != len(t.Shape) {
				return nil, false, errorf("adapter parameter %q has shape %v; input %q of %s has rank %d", p.Name, t.Shape, p.Name, modelLabel(m), len(s.Dim))
			}
			for i, d := range s.Dim {
				if v, fixed := d.Value.(*onnxpb.TensorShapeProto_Dimension_DimValue); fixed && v.DimValue != t.Shape[i] {
					return nil, false, errorf("adapter parameter %q has shape %v; input %q of %s has %d at axis %d", p.Name, t.Shape, p.Name, modelLabel(m), v.DimValue, i)
				}
			}
		}
		params[p.Name] = t
	}
	return params, true, nil
}

// ApplyInputs makes params (from InputParams) the defaults of the inputs
// of the same names: the initializers that ONNX Runtime feeds when a run
// gives none. Fed nothing, m then computes what it computes with the
// adapter fed; fed other values, it runs those.
func ApplyInputs(m *graph.Model, params map[string]*adapter.Tensor) error {
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if m.Input(name) == nil {
			return errorf("adapter parameter %q names no input of %s", name, modelLabel(m))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		t := params[name]
		dt := dtype.Type(m.Input(name).GetType().GetTensorType().GetElemType())
		m.AddInitializer(graph.NewFloat32Tensor(name, dt, t.Shape, t.Data))
	}
	return nil
}

// inputBranch is one LoRA branch whose factors are graph inputs: y =
// x·W, u = (x·A)·B·scale, out = y + u.
type inputBranch struct {
	l     Linear
	a, b  string
	nodes []*onnxpb.NodeProto // the branch's nodes and the Add
	sum   string              // the Add's output
	scale float64
}

// MergeInputs folds params (from InputParams) into the weights of m where
// each pair of them is the A and B of a branch x·A·B (times constant
// factors) added to a linear layer x·W of the same activation, as models
// with their LoRA factors as inputs are built: W' = W + s·A·B, the
// branch's nodes and the two inputs removed. A parameter that is not part
// of such a branch is an error, and m is not changed then.
func MergeInputs(m *graph.Model, params map[string]*adapter.Tensor) error {
	linears, err := FindLinears(m)
	if err != nil {
		return err
	}
	byOutput := map[string]Linear{}
	for _, l := range linears {
		byOutput[l.Output] = l
	}
	used := map[string]bool{}
	var branches []inputBranch
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if used[name] {
			continue
		}
		br, ok := findInputBranch(m, name, params, byOutput)
		if !ok {
			continue
		}
		used[br.a], used[br.b] = true, true
		branches = append(branches, br)
	}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if !used[name] {
			return errorf("adapter parameter %q of %s is not one factor of a LoRA branch (x·A·B added to the x·W of a linear layer), so it cannot be merged into a weight: run the model with the adapter fed instead", name, modelLabel(m))
		}
	}
	var folds []fold
	for _, br := range branches {
		if br.l.SharedWeight {
			return layerErr(br.l, "weight %q is shared with other nodes; merging would change them too", br.l.Weight)
		}
		a, b := params[br.a], params[br.b]
		folds = append(folds, fold{l: br.l, module: br.l.Module, a: a.Data, b: b.Data, rk: int(a.Shape[1]), scale: br.scale})
	}
	for _, f := range folds {
		if err := f.apply(m, 1); err != nil {
			return err
		}
	}
	for _, br := range branches {
		m.RemoveNodes(br.nodes...)
		base := m.Producer(br.l.Output)
		base.Output[0] = br.sum
		m.Reindex()
		for _, name := range []string{br.a, br.b} {
			m.RemoveInitializer(name)
			m.RemoveInput(name)
		}
	}
	return nil
}

// findInputBranch finds the branch in which input a is A: MatMul(x, a),
// constant Mul or Div nodes, MatMul(·, b) with b another parameter, and
// more constant factors, added to the output of a linear layer of x.
func findInputBranch(m *graph.Model, a string, params map[string]*adapter.Tensor, byOutput map[string]Linear) (inputBranch, bool) {
	br := inputBranch{a: a, scale: 1}
	var first *onnxpb.NodeProto
	for _, c := range m.Consumers(a) {
		if c.OpType == "MatMul" && len(c.Input) == 2 && c.Input[1] == a && len(m.Consumers(a)) == 1 {
			first = c
		}
	}
	if first == nil || len(params[a].Shape) != 2 {
		return br, false
	}
	x := first.Input[0]
	br.nodes = append(br.nodes, first)
	v := first.Output[0]
	for steps := 0; steps < 8; steps++ {
		cs := m.Consumers(v)
		if len(cs) != 1 || m.IsGraphOutput(v) {
			return br, false
		}
		c := cs[0]
		switch {
		case c.OpType == "MatMul" && br.b == "" && len(c.Input) == 2 && c.Input[0] == v && params[c.Input[1]] != nil && c.Input[1] != a && len(m.Consumers(c.Input[1])) == 1:
			br.b = c.Input[1]
		case (c.OpType == "Mul" || c.OpType == "Div") && len(c.Input) == 2:
			k, ok := constantScalar(m, c.Input[1])
			if !ok && c.OpType == "Mul" && c.Input[1] == v {
				k, ok = constantScalar(m, c.Input[0])
			}
			if !ok || (c.OpType == "Div" && c.Input[0] != v) {
				return br, false
			}
			if c.OpType == "Div" {
				k = 1 / k
			}
			br.scale *= k
		case c.OpType == "Add" && len(c.Input) == 2 && br.b != "":
			other := c.Input[0]
			if other == v {
				other = c.Input[1]
			}
			l, ok := byOutput[other]
			if !ok || l.Input != x || l.TransA || len(m.Consumers(other)) != 1 {
				return br, false
			}
			bShape := params[br.b].Shape
			if len(bShape) != 2 || params[a].Shape[0] != l.In || params[a].Shape[1] != bShape[0] || bShape[1] != l.Out {
				return br, false
			}
			br.l, br.sum = l, c.Output[0]
			br.nodes = append(br.nodes, c)
			return br, true
		default:
			return br, false
		}
		br.nodes = append(br.nodes, c)
		v = c.Output[0]
	}
	return br, false
}

// constantScalar returns the value of a one-element float initializer or
// Constant.
func constantScalar(m *graph.Model, name string) (float64, bool) {
	t := m.Initializer(name)
	if t == nil {
		if p := m.Producer(name); p != nil && p.OpType == "Constant" && len(p.Attribute) == 1 {
			t = p.Attribute[0].GetT()
		}
	}
	if t == nil || graph.NumElements(t.Dims) != 1 || !graph.TypeOf(t).IsFloat() {
		return 0, false
	}
	v, err := m.Float32s(t)
	if err != nil || len(v) != 1 {
		return 0, false
	}
	return float64(v[0]), true
}
