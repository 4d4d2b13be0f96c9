package runtime

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	ort "github.com/yalue/onnxruntime_go"
)

// Value is an output that Run cannot return as a Tensor: a string tensor,
// a sequence or a map (scikit-learn exports' labels and ZipMap
// probabilities), as RunValues returns it. Exactly one of Strings (with
// Shape), Tensor, Elems and Keys/Values is set, or Problem says why the
// value could not be read.
type Value struct {
	// Strings are a string tensor's elements in row-major order, and
	// Shape its shape.
	Strings []string
	Shape   []int64
	// Tensor is a numeric tensor inside a sequence or a map.
	Tensor *Tensor
	// Elems are a sequence's elements.
	Elems []*Value
	// Keys and Values are a map's keys and values, tensors of one length.
	Keys, Values *Value
	// Problem says why the value could not be read; "" if it was.
	Problem string
}

// Kind names the value for messages: "a string tensor", "a sequence of 2",
// "a map of 3".
func (v *Value) Kind() string {
	switch {
	case v.Problem != "":
		return "unreadable"
	case v.Strings != nil || v.Shape != nil:
		return "a string tensor"
	case v.Tensor != nil:
		return "a " + v.Tensor.DType().String() + " tensor"
	case v.Keys != nil:
		return fmt.Sprintf("a map of %d", v.Len())
	}
	return fmt.Sprintf("a sequence of %d", len(v.Elems))
}

// Len is the number of elements: of a tensor, strings, a sequence's
// elements or a map's entries.
func (v *Value) Len() int {
	switch {
	case v.Tensor != nil:
		return v.Tensor.Len()
	case v.Keys != nil:
		return v.Keys.Len()
	case v.Elems != nil:
		return len(v.Elems)
	}
	return len(v.Strings)
}

// fetchable reports whether an output of this kind (its description,
// "a sequence of maps from …", or "" for a tensor) is one that RunValues
// reads: a string tensor, a sequence or a map; not an optional or a
// sparse tensor, which onnxruntime_go cannot return.
func fetchable(v ValueInfo, kind string) bool {
	if v.DType == dtype.String {
		return true
	}
	if strings.Contains(kind, "optional") || strings.Contains(kind, "sparse") {
		return false
	}
	return strings.HasPrefix(kind, "a sequence of") || strings.HasPrefix(kind, "a map from")
}

// RunValues runs the model once, as Run does with every output, and also
// returns the outputs that Run cannot, string tensors, sequences and
// maps, by name. It always lets ONNX Runtime allocate the outputs.
func (s *Session) RunValues(inputs map[string]*Tensor) (map[string]*Tensor, map[string]*Value, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, s.errClosed()
	}
	if err := s.checkInputs(inputs); err != nil {
		return nil, nil, err
	}
	var outs []int
	for i, p := range s.plans {
		if p.why == "" {
			outs = append(outs, i)
		}
	}
	if err := s.coreCan(inputs, outs); err != nil {
		return nil, nil, err
	}
	values := map[string]*Value{}
	res, err := s.runCoreValues(inputs, outs, values)
	if err != nil {
		return nil, nil, s.runErr(err)
	}
	return res, values, nil
}

// valueOf copies what onnxruntime_go returned for a non-tensor output.
// It does not destroy v: the caller does, with its elements.
func valueOf(v ort.Value) *Value {
	switch x := v.(type) {
	case nil:
		return &Value{Problem: "ONNX Runtime returned nothing"}
	case *ort.StringTensor:
		s, err := x.GetContents()
		if err != nil {
			return &Value{Problem: err.Error()}
		}
		return &Value{Strings: s, Shape: []int64(x.GetShape())}
	case *ort.Sequence:
		elems, err := x.GetValues()
		if err != nil {
			return &Value{Problem: err.Error()}
		}
		out := &Value{Elems: make([]*Value, len(elems))}
		for i, e := range elems {
			out.Elems[i] = valueOf(e)
		}
		return out
	case *ort.Map:
		k, vals, err := x.GetKeysAndValues()
		if err != nil {
			return &Value{Problem: err.Error()}
		}
		return &Value{Keys: valueOf(k), Values: valueOf(vals)}
	}
	t, err := tensorCopy(v)
	if err != nil {
		return &Value{Problem: err.Error()}
	}
	return &Value{Tensor: t}
}

// tensorCopy returns a copy of a numeric tensor inside a sequence or map,
// whose owner destroys it.
func tensorCopy(v ort.Value) (*Tensor, error) {
	t, err := tensorOver(v)
	if err != nil {
		return nil, err
	}
	return t.Clone(), nil
}
