package runtime

import (
	"fmt"
	"maps"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
	ort "github.com/yalue/onnxruntime_go"
)

// Run runs the model once. inputs maps input names to tensors; every input
// that is not optional must be there, and each must have the element type
// and fit the shape that the model declares, with any size in a dynamic
// dimension. outputs names the outputs to return; nil returns all of them.
// The returned tensors are new and belong to the caller.
//
// Inputs are not copied; they must not change until Run returns.
func (s *Session) Run(inputs map[string]*Tensor, outputs []string) (map[string]*Tensor, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	outs, err := s.checkRun(inputs, outputs)
	if err != nil {
		return nil, err
	}
	return s.run(inputs, outs)
}

// checkRun checks a run of the session, which the caller holds locked,
// with inputs and outputs (nil: all), as Run documents, and returns the
// outputs' indices.
func (s *Session) checkRun(inputs map[string]*Tensor, outputs []string) ([]int, error) {
	if s.closed {
		return nil, s.errClosed()
	}
	if err := s.checkInputs(inputs); err != nil {
		return nil, err
	}
	return s.selectOutputs(outputs)
}

// run picks how to run: where every requested output has a static shape the
// outputs are allocated here and bound, so ONNX Runtime writes straight into
// them; otherwise ONNX Runtime allocates them.
func (s *Session) run(inputs map[string]*Tensor, outs []int) (map[string]*Tensor, error) {
	if !s.allBindable(outs) {
		if err := s.coreCan(inputs, outs); err != nil {
			return nil, err
		}
		res, err := s.runCore(inputs, outs)
		if err != nil {
			return nil, s.runErr(err)
		}
		return res, nil
	}
	res, err := s.runBound(inputs, outs, nil)
	if err == nil {
		return res, nil
	}
	if s.coreCan(inputs, outs) != nil {
		return nil, s.runErr(err)
	}
	// The model may declare static output shapes that the run does not
	// produce. Let ONNX Runtime allocate the outputs instead.
	res, err2 := s.runCore(inputs, outs)
	if err2 != nil {
		return nil, s.runErr(err)
	}
	s.noBind.Store(true)
	return res, nil
}

func (s *Session) runErr(err error) error {
	return errorf("%s: run: %w", s.name, ortError("running the model", err))
}

func (s *Session) allBindable(outs []int) bool {
	if s.noBind.Load() {
		return false
	}
	for _, i := range outs {
		if !s.plans[i].bindable {
			return false
		}
	}
	return true
}

// coreCan reports why runCore cannot serve this run, or nil if it can.
func (s *Session) coreCan(inputs map[string]*Tensor, outs []int) error {
	for _, i := range outs {
		if p := s.plans[i]; p.slot < 0 && p.dataSlot < 0 {
			return errorf("%s: output %q can only be returned when every requested output has a static shape",
				s.name, s.outputs[i].Name)
		}
	}
	if s.defaults != nil {
		return nil
	}
	for name := range inputs {
		if v := s.inputs[s.inIdx[name]]; v.Optional {
			return errorf("%s: optional input %q can only be fed when every requested output has a static shape, because %w",
				s.name, name, s.noDefaults)
		}
	}
	return nil
}

// runBound runs through an I/O binding: inputs bound by name, outputs
// allocated here (or taken from dst) with their static shapes.
func (s *Session) runBound(inputs map[string]*Tensor, outs []int, dst map[string]*Tensor) (map[string]*Tensor, error) {
	io, err := s.core.CreateIoBinding()
	if err != nil {
		return nil, err
	}
	defer io.Destroy()
	inputs = s.withHidden(inputs)
	vals := make([]ort.Value, 0, len(inputs)+len(outs))
	defer func() { destroyAll(vals) }()
	for name, t := range inputs {
		v, _, err := wrap(t)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		vals = append(vals, v)
		if err := io.BindInput(name, v); err != nil {
			return nil, fmt.Errorf("binding input %q: %w", name, err)
		}
	}
	res := make(map[string]*Tensor, len(outs))
	var syncs []func()
	for _, i := range outs {
		vi := s.outputs[i]
		t := dst[vi.Name]
		if t == nil {
			if t, err = Zeros(vi.DType, vi.Shape); err != nil {
				return nil, err
			}
		}
		v, sync, err := wrap(t)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", vi.Name, err)
		}
		vals = append(vals, v)
		if err := io.BindOutput(vi.Name, v); err != nil {
			return nil, fmt.Errorf("binding output %q: %w", vi.Name, err)
		}
		if sync != nil {
			syncs = append(syncs, sync)
		}
		res[vi.Name] = t
	}
	if err := s.core.RunWithBinding(io); err != nil {
		return nil, err
	}
	for _, f := range syncs {
		f()
	}
	return res, nil
}

// runCore runs the core session with every input it takes (defaults where
// the caller gave none) and lets ONNX Runtime allocate every output.
func (s *Session) runCore(inputs map[string]*Tensor, outs []int) (map[string]*Tensor, error) {
	return s.runCoreValues(inputs, outs, nil)
}

// runCoreValues is runCore that also converts the outputs that are not
// numeric tensors into values, where values is not nil.
func (s *Session) runCoreValues(inputs map[string]*Tensor, outs []int, values map[string]*Value) (map[string]*Tensor, error) {
	if len(s.coreIn) == 0 || len(s.coreOut) == 0 {
		// onnxruntime_go's Run indexes the first input and output.
		return nil, fmt.Errorf("a model with no input or no output to fetch runs only when every output it returns has a static shape")
	}
	in := make([]ort.Value, len(s.coreIn))
	defer destroyAll(in)
	for i, name := range s.coreIn {
		t := inputs[name]
		if t == nil {
			t = s.defaults[name]
		}
		v, _, err := wrap(t)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		in[i] = v
	}
	out := make([]ort.Value, len(s.coreOut))
	defer destroyAll(out)
	if err := s.core.Run(in, out); err != nil {
		return nil, err
	}
	res := make(map[string]*Tensor, len(outs))
	for _, i := range outs {
		p, vi := s.plans[i], s.outputs[i]
		var t *Tensor
		var err error
		if p.slot >= 0 {
			t, err = unwrap(out[p.slot])
			out[p.slot] = nil
		} else {
			t, err = assemble(vi, out[p.dataSlot], out[p.shapeSlot])
			out[p.dataSlot], out[p.shapeSlot] = nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", vi.Name, err)
		}
		res[vi.Name] = t
	}
	if values != nil {
		for i, p := range s.plans {
			if p.valueSlot >= 0 {
				values[s.outputs[i].Name] = valueOf(out[p.valueSlot])
			}
		}
	}
	return res, nil
}

// assemble rebuilds output v from its shadow outputs: its data flattened to
// one dimension (float32 for 16-bit floats) and its shape.
func assemble(v ValueInfo, data, shape ort.Value) (*Tensor, error) {
	st, err := unwrap(shape)
	if err != nil {
		data.Destroy()
		return nil, err
	}
	dt, err := unwrap(data)
	if err != nil {
		return nil, err
	}
	if st.elem != dtype.Int64 {
		return nil, fmt.Errorf("shadow shape is %s, want int64", st.elem)
	}
	if !isHalf(v.DType) {
		return newTensor(dt.elem, st.Int64(), dt.data, dt.Len())
	}
	if dt.elem != dtype.Float32 {
		return nil, fmt.Errorf("shadow data is %s, want float32", dt.elem)
	}
	f := dt.Float32()
	h := make([]uint16, len(f))
	to16 := half.Float32ToFloat16
	if v.DType == dtype.BFloat16 {
		to16 = half.Float32ToBFloat16
	}
	for i, x := range f {
		h[i] = to16(x)
	}
	return newTensor(v.DType, st.Int64(), h, len(h))
}

// RunInto runs the model once and writes the outputs into the given
// tensors, which the caller allocates with the right element types and
// shapes; ONNX Runtime writes into their memory directly. It is the
// lower-overhead form of Run for callers that know the output shapes, such
// as a generation loop. Inputs are checked as in Run.
func (s *Session) RunInto(inputs, outputs map[string]*Tensor) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return s.errClosed()
	}
	if err := s.checkInputs(inputs); err != nil {
		return err
	}
	outs, err := s.checkOutputs(outputs)
	if err != nil {
		return err
	}
	if _, err := s.runBound(inputs, outs, outputs); err != nil {
		return s.runErr(err)
	}
	return nil
}

// checkOutputs checks caller-allocated outputs against the model and
// returns their indices.
func (s *Session) checkOutputs(outputs map[string]*Tensor) ([]int, error) {
	if len(outputs) == 0 {
		return nil, errorf("%s: no outputs given", s.name)
	}
	idx := make([]int, 0, len(outputs))
	for _, name := range slices.Sorted(maps.Keys(outputs)) {
		i, ok := s.outIdx[name]
		if !ok {
			return nil, errorf("%s: unknown output %q (outputs: %s)",
				s.name, name, joinNames(s.outputNames()))
		}
		t := outputs[name]
		if err := checkTensor(s.outputs[i], t); err != nil {
			return nil, errorf("%s: output %w", s.name, err)
		}
		if isHalf(t.elem) && t.Rank() == 0 {
			return nil, errorf("%s: output %q: %w", s.name, name, errHalfScalar)
		}
		idx = append(idx, i)
	}
	return idx, nil
}
