package train

import (
	"slices"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
)

// Optimizer updates parameters in place from their gradients.
//
// Implementations keep per-parameter state (moments, momentum buffers)
// keyed by parameter name, created on a parameter's first step as torch
// does, so State and SetState carry it across a checkpoint.
type Optimizer interface {
	// Step applies one update to params with learning rate lr, reading
	// each p.Grad. It does not zero the gradients.
	Step(lr float64, params []*Param) error
	// Steps returns the number of steps taken so far.
	Steps() int64
	// State returns a deep copy of the optimizer's state.
	State() *OptimizerState
	// SetState replaces the optimizer's state with a copy of s, which
	// must come from an optimizer of the same kind.
	SetState(s *OptimizerState) error
}

// OptimizerState is an optimizer's state, for checkpoints. It encodes to a
// safetensors file (MarshalBinary): each slot of each parameter is a 1-D
// F32 tensor named "<slot>/<param>", and the kind, step count and
// hyperparameters go in the metadata.
type OptimizerState struct {
	// Kind is "adamw" or "sgd".
	Kind string
	// Step is the number of steps taken.
	Step int64
	// Hyper records the hyperparameters, for information: SetState does
	// not restore them (the caller's options win, as on a resumed run).
	Hyper map[string]float64
	// Slots maps a slot name ("exp_avg", "exp_avg_sq", "momentum_buffer")
	// to its tensor per parameter name.
	Slots map[string]map[string][]float32
}

// clone returns a deep copy of s.
func (s *OptimizerState) clone() *OptimizerState {
	c := &OptimizerState{Kind: s.Kind, Step: s.Step, Hyper: map[string]float64{}, Slots: map[string]map[string][]float32{}}
	for k, v := range s.Hyper {
		c.Hyper[k] = v
	}
	for slot, per := range s.Slots {
		cp := make(map[string][]float32, len(per))
		for name, v := range per {
			cp[name] = slices.Clone(v)
		}
		c.Slots[slot] = cp
	}
	return c
}

// stateKeySep separates the slot from the parameter name in a tensor key.
const stateKeySep = "/"

// MarshalBinary encodes the state as a safetensors file. The encoding is
// deterministic.
func (s *OptimizerState) MarshalBinary() ([]byte, error) {
	if s.Kind == "" {
		return nil, errorf("optimizer state: no kind")
	}
	tensors := map[string]*adapter.Tensor{}
	for slot, per := range s.Slots {
		if slot == "" || strings.Contains(slot, stateKeySep) {
			return nil, errorf("optimizer state: bad slot name %q", slot)
		}
		for name, v := range per {
			tensors[slot+stateKeySep+name] = adapter.NewTensor([]int64{int64(len(v))}, v)
		}
	}
	meta := map[string]string{"format": "peftonnx optimizer state", "kind": s.Kind, "step": strconv.FormatInt(s.Step, 10)}
	for k, v := range s.Hyper {
		meta["hyper."+k] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	b, err := adapter.EncodeSafetensors(tensors, meta)
	if err != nil {
		return nil, errorf("optimizer state: %w", err)
	}
	return b, nil
}

// UnmarshalBinary decodes a state written by MarshalBinary.
func (s *OptimizerState) UnmarshalBinary(b []byte) error {
	tensors, meta, err := adapter.DecodeSafetensors(b)
	if err != nil {
		return errorf("optimizer state: %w", err)
	}
	out := OptimizerState{Kind: meta["kind"], Hyper: map[string]float64{}, Slots: map[string]map[string][]float32{}}
	if out.Kind == "" {
		return errorf("optimizer state: metadata has no kind")
	}
	step, err := strconv.ParseInt(meta["step"], 10, 64)
	if err != nil || step < 0 {
		return errorf("optimizer state: bad step %q", meta["step"])
	}
	out.Step = step
	for k, v := range meta {
		if name, ok := strings.CutPrefix(k, "hyper."); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return errorf("optimizer state: hyperparameter %s: bad value %q", name, v)
			}
			out.Hyper[name] = f
		}
	}
	for key, t := range tensors {
		slot, name, ok := strings.Cut(key, stateKeySep)
		if !ok {
			return errorf("optimizer state: tensor %q is not named <slot>/<param>", key)
		}
		if t.DType != dtype.Float32 || len(t.Shape) != 1 {
			return errorf("optimizer state: tensor %q: want a 1-D float32 tensor, got %s %v", key, t.DType, t.Shape)
		}
		if out.Slots[slot] == nil {
			out.Slots[slot] = map[string][]float32{}
		}
		out.Slots[slot][name] = t.Data
	}
	*s = out
	return nil
}

// loadSlots checks that s is a state of kind and returns copies of the
// named slots per parameter, each a map that may be missing parameters
// that had not stepped yet.
func loadSlots(s *OptimizerState, kind string, slots ...string) ([]map[string][]float32, error) {
	if s == nil {
		return nil, errorf("%s: nil optimizer state", kind)
	}
	if s.Kind != kind {
		return nil, errorf("%s: cannot load the state of a %q optimizer", kind, s.Kind)
	}
	for slot := range s.Slots {
		if !slices.Contains(slots, slot) {
			return nil, errorf("%s: optimizer state has unknown slot %q", kind, slot)
		}
	}
	c := s.clone()
	out := make([]map[string][]float32, len(slots))
	for i, slot := range slots {
		out[i] = c.Slots[slot]
		if out[i] == nil {
			out[i] = map[string][]float32{}
		}
	}
	return out, nil
}

// slotsFor returns the slot of each of params in m, creating one zeroed
// on first use (created[i] is then true), and checks their lengths.
func slotsFor(kind string, m map[string][]float32, params []*Param) (slots [][]float32, created []bool, err error) {
	slots, created = make([][]float32, len(params)), make([]bool, len(params))
	for i, p := range params {
		v, ok := m[p.Name]
		if !ok {
			v = make([]float32, len(p.Data))
			m[p.Name] = v
		} else if len(v) != len(p.Data) {
			return nil, nil, errorf("%s: state of %q has %d values, parameter has %d", kind, p.Name, len(v), len(p.Data))
		}
		slots[i], created[i] = v, !ok
	}
	return slots, created, nil
}

// Both optimizers implement Optimizer.
var (
	_ Optimizer = (*AdamW)(nil)
	_ Optimizer = (*SGD)(nil)
)
