package models

import (
	"maps"
	"slices"

	"github.com/peftonnx/peftonnx/graph"
)

// Tensor is one weight: its shape and its values in row-major order.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// Weights maps initializer names to their values.
type Weights map[string]Tensor

// WeightsOf returns every floating-point initializer of m, widened to
// float32. Float16 weights come back exactly as the graph holds them, so a
// reference computed from them sees what ONNX Runtime sees. It works on any
// model, not only the ones built here.
func WeightsOf(m *graph.Model) (Weights, error) {
	w := Weights{}
	for _, t := range m.Graph().Initializer {
		if !graph.TypeOf(t).IsFloat() {
			continue
		}
		v, err := m.Float32s(t)
		if err != nil {
			return nil, errorf("weights: %w", err)
		}
		w[t.Name] = Tensor{Shape: append([]int64(nil), t.Dims...), Data: v}
	}
	return w, nil
}

// Names returns the weights' names, sorted.
func (w Weights) Names() []string {
	return slices.Sorted(maps.Keys(w))
}

// NumParams returns the number of values in all the weights.
func (w Weights) NumParams() int64 {
	var n int64
	for _, t := range w {
		n += int64(len(t.Data))
	}
	return n
}

// get returns the weight called name, checking its shape. A missing or
// misshapen weight is a caller's error, reported as such.
func (w Weights) get(name string, shape ...int64) (Tensor, error) {
	t, ok := w[name]
	if !ok {
		return Tensor{}, errorf("weight %q is missing", name)
	}
	if len(t.Shape) != len(shape) {
		return Tensor{}, errorf("weight %q has shape %v, want %v", name, t.Shape, shape)
	}
	for i := range shape {
		if t.Shape[i] != shape[i] {
			return Tensor{}, errorf("weight %q has shape %v, want %v", name, t.Shape, shape)
		}
	}
	if int64(len(t.Data)) != graph.NumElements(shape) {
		return Tensor{}, errorf("weight %q has %d values for shape %v", name, len(t.Data), shape)
	}
	return t, nil
}
