package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// valueJSON renders an output that is not a numeric tensor as JSON: a
// string tensor as nested arrays of strings, a sequence as an array of its
// elements, a map as an object from key (as text) to value, a numeric
// tensor as nested arrays of numbers (NaN and infinities as strings).
func valueJSON(v *ortrt.Value) ([]byte, error) {
	x, err := valueTree(v)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(x, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// valueTree turns v into values that encoding/json writes.
func valueTree(v *ortrt.Value) (any, error) {
	switch {
	case v.Problem != "":
		return nil, fmt.Errorf("cannot be read: %s", v.Problem)
	case v.Strings != nil || v.Shape != nil:
		flat := make([]any, len(v.Strings))
		for i, s := range v.Strings {
			flat[i] = s
		}
		return nest(flat, v.Shape), nil
	case v.Tensor != nil:
		return nest(tensorItems(v.Tensor), v.Tensor.Shape()), nil
	case v.Keys != nil:
		keys, err := valueTree(v.Keys)
		if err != nil {
			return nil, err
		}
		vals, err := valueTree(v.Values)
		if err != nil {
			return nil, err
		}
		ks, ok1 := keys.([]any)
		vs, ok2 := vals.([]any)
		if !ok1 || !ok2 || len(ks) != len(vs) {
			return nil, fmt.Errorf("a map whose keys and values are not two lists of one length")
		}
		m := make(map[string]any, len(ks))
		for i, k := range ks {
			m[fmt.Sprint(k)] = vs[i]
		}
		return m, nil
	}
	out := make([]any, len(v.Elems))
	for i, e := range v.Elems {
		x, err := valueTree(e)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out[i] = x
	}
	return out, nil
}

// tensorItems lists a numeric tensor's elements for JSON.
func tensorItems(t *ortrt.Tensor) []any {
	if t.DType() == dtype.Bool {
		b := t.Bool()
		out := make([]any, len(b))
		for i, x := range b {
			out[i] = x
		}
		return out
	}
	f := t.ToFloat64()
	out := make([]any, len(f))
	for i, x := range f {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			out[i] = strconv.FormatFloat(x, 'g', -1, 64)
		} else {
			out[i] = x
		}
	}
	return out
}

// nest shapes a row-major list as nested arrays; a scalar is the element
// itself.
func nest(flat []any, shape []int64) any {
	if len(shape) == 0 {
		if len(flat) == 1 {
			return flat[0]
		}
		return flat
	}
	if len(shape) == 1 {
		return flat
	}
	n := int(shape[0])
	if n == 0 {
		return []any{}
	}
	step := len(flat) / n
	out := make([]any, n)
	for i := range out {
		out[i] = nest(flat[i*step:(i+1)*step], shape[1:])
	}
	return out
}
