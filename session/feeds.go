package session

import (
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/half"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// feedsOf returns the runtime tensors that feed the LoRA adapter ad to m,
// a model that takes its factors as inputs (rewrite.Feeds).
func feedsOf(m *graph.Model, ad *adapter.Adapter) (map[string]*rt.Tensor, error) {
	feeds, err := rewrite.Feeds(m, ad)
	if err != nil {
		return nil, err
	}
	tensors := make(map[string]*rt.Tensor, len(feeds))
	for name, t := range feeds {
		if tensors[name], err = runtimeTensor(t); err != nil {
			return nil, errorf("input %q: %w", name, err)
		}
	}
	return tensors, nil
}

// runtimeTensor converts an adapter tensor to a runtime tensor of the same
// element type.
func runtimeTensor(t *adapter.Tensor) (*rt.Tensor, error) {
	switch t.DType.Or(dtype.Float32) { // an adapter tensor of no dtype holds float32
	case dtype.Float32:
		return rt.NewFloat32(t.Shape, t.Data)
	case dtype.Float16:
		return rt.NewFloat16FromFloat32(t.Shape, t.Data)
	case dtype.BFloat16:
		bits := make([]uint16, len(t.Data))
		for i, v := range t.Data {
			bits[i] = half.Float32ToBFloat16(v)
		}
		return rt.NewBFloat16(t.Shape, bits)
	case dtype.Float64:
		v := make([]float64, len(t.Data))
		for i, x := range t.Data {
			v[i] = float64(x)
		}
		return rt.NewFloat64(t.Shape, v)
	}
	return nil, errorf("element type %s cannot be fed", t.DType)
}

// describeExtra names the first of ad's Extra tensors: "h.0.attn.c_attn.bias, …".
func describeExtra(ad *adapter.Adapter) string {
	names := make([]string, 0, len(ad.Extra))
	for name := range ad.Extra {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > 2 {
		names = append(names[:2], "…")
	}
	return strings.Join(names, ", ")
}
