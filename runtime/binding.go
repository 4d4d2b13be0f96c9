package runtime

import (
	"maps"
	"slices"

	ort "github.com/yalue/onnxruntime_go"
)

// Binding is a prepared run for loops that run one session over and over,
// such as a training loop. It binds its input tensors to ONNX Runtime once,
// by reference: a loop changes the input data in place and calls Run again.
// Outputs are allocated once, by the first Run, and every later Run writes
// into the same tensors, so a step allocates nothing.
//
// A Binding is not safe for concurrent use. Closing its session closes it.
type Binding struct {
	s       *Session
	io      *ort.IoBinding
	inputs  map[string]*Tensor
	inVals  map[string]ort.Value
	outIdx  []int
	outputs map[string]*Tensor
	outVals []ort.Value
	outSync []func()
	bound   bool // outputs are bound
	closed  bool
}

// Bind prepares repeated runs of the session with the given inputs and
// outputs (nil: all outputs), which it checks as Run does. The Binding keeps
// the input tensors and reads their data anew on every Run.
func (s *Session) Bind(inputs map[string]*Tensor, outputs []string) (*Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	outs, err := s.checkRun(inputs, outputs)
	if err != nil {
		return nil, err
	}
	io, err := s.core.CreateIoBinding()
	if err != nil {
		return nil, errorf("%s: creating I/O binding: %w", s.name, err)
	}
	b := &Binding{
		s: s, io: io, outIdx: outs,
		inputs: make(map[string]*Tensor, len(inputs)),
		inVals: make(map[string]ort.Value, len(inputs)),
	}
	for _, name := range slices.Sorted(maps.Keys(inputs)) {
		if err := b.bindInput(name, inputs[name]); err != nil {
			b.release()
			return nil, err
		}
	}
	for name := range s.guard.hidden {
		if inputs[name] == nil {
			if err := b.bindValue(name, s.defaults[name]); err != nil {
				b.release()
				return nil, err
			}
		}
	}
	if s.allBindable(outs) {
		res := make(map[string]*Tensor, len(outs))
		for _, i := range outs {
			vi := s.outputs[i]
			if res[vi.Name], err = Zeros(vi.DType, vi.Shape); err != nil {
				b.release()
				return nil, err
			}
		}
		if err := b.bindOutputs(res); err != nil {
			b.release()
			return nil, err
		}
	}
	s.bindings[b] = struct{}{}
	return b, nil
}

func (b *Binding) bindInput(name string, t *Tensor) error {
	if err := b.bindValue(name, t); err != nil {
		return err
	}
	b.inputs[name] = t
	return nil
}

// bindValue binds t as input name, in place of any value bound before,
// without making it one of the binding's inputs.
func (b *Binding) bindValue(name string, t *Tensor) error {
	v, _, err := wrap(t)
	if err != nil {
		return errorf("%s: input %q: %w", b.s.name, name, err)
	}
	if err := b.io.BindInput(name, v); err != nil {
		v.Destroy()
		return errorf("%s: binding input %q: %w", b.s.name, name, err)
	}
	if old := b.inVals[name]; old != nil {
		old.Destroy()
	}
	b.inVals[name] = v
	return nil
}

// bindOutputs binds res as the outputs of later runs. Where an output cannot
// be bound, it leaves every output unbound, and each Run allocates.
func (b *Binding) bindOutputs(res map[string]*Tensor) error {
	b.unbindOutputs()
	for _, t := range res {
		if isHalf(t.elem) && t.Rank() == 0 {
			b.outputs = res
			return nil
		}
	}
	for _, i := range b.outIdx {
		name := b.s.outputs[i].Name
		v, sync, err := wrap(res[name])
		if err != nil {
			b.unbindOutputs()
			return errorf("%s: output %q: %w", b.s.name, name, err)
		}
		b.outVals = append(b.outVals, v)
		if err := b.io.BindOutput(name, v); err != nil {
			b.unbindOutputs()
			return errorf("%s: binding output %q: %w", b.s.name, name, err)
		}
		if sync != nil {
			b.outSync = append(b.outSync, sync)
		}
	}
	b.outputs = res
	b.bound = true
	return nil
}

func (b *Binding) unbindOutputs() {
	b.io.ClearBoundOutputs()
	destroyAll(b.outVals)
	b.outVals, b.outSync, b.bound = b.outVals[:0], b.outSync[:0], false
}

// Run runs the session on the current contents of the bound inputs. It
// returns the output tensors, which are the same tensors on every Run as
// long as the output shapes stay the same: copy what must outlive the next
// Run. Scalar inputs are read anew too.
func (b *Binding) Run() (map[string]*Tensor, error) {
	s := b.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if b.closed {
		return nil, errorf("%s: binding is closed", s.name)
	}
	for name, t := range b.inputs {
		if t.Rank() == 0 {
			// onnxruntime_go scalars hold a copy of their value.
			if err := b.bindInput(name, t); err != nil {
				return nil, err
			}
		}
	}
	if b.bound {
		err := s.core.RunWithBinding(b.io)
		if err == nil {
			for _, f := range b.outSync {
				f()
			}
			return b.outputs, nil
		}
		// An output's shape may have changed with the input data, or the
		// model may declare a static shape that it does not produce. Run
		// with freshly allocated outputs, and bind those.
	}
	res, err := s.run(b.inputs, b.outIdx)
	if err != nil {
		return nil, err
	}
	if err := b.bindOutputs(res); err != nil {
		return nil, err
	}
	return res, nil
}

// Output returns the tensor that Run writes output name into, or nil before
// the first Run where its shape is dynamic.
func (b *Binding) Output(name string) *Tensor { return b.outputs[name] }

// SetInput binds t as input name in place of the tensor bound before, or
// adds an optional input; a nil t removes an optional input, which then
// takes its default. When the shape changes and some output has a dynamic
// shape, the next Run allocates new output tensors.
func (b *Binding) SetInput(name string, t *Tensor) error {
	s := b.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if b.closed {
		return errorf("%s: binding is closed", s.name)
	}
	i, ok := s.inIdx[name]
	if !ok {
		return errorf("%s: unknown input %q (%s)", s.name, name, s.describeInputs())
	}
	old := b.inputs[name]
	if t == nil {
		if !s.inputs[i].Optional {
			return errorf("%s: input %q is required and cannot be removed", s.name, name)
		}
		if old == nil {
			return nil
		}
		delete(b.inputs, name)
		if s.guard.hidden[name] {
			// ONNX Runtime does not know this default; bind it.
			if err := b.bindValue(name, s.defaults[name]); err != nil {
				return err
			}
		} else {
			b.inVals[name].Destroy()
			delete(b.inVals, name)
			b.io.ClearBoundInputs()
			for n, v := range b.inVals {
				if err := b.io.BindInput(n, v); err != nil {
					return errorf("%s: binding input %q: %w", s.name, n, err)
				}
			}
		}
	} else {
		if err := checkTensor(s.inputs[i], t); err != nil {
			return errorf("%s: input %w", s.name, err)
		}
		if err := b.bindInput(name, t); err != nil {
			return err
		}
	}
	if (old == nil || t == nil || !slices.Equal(old.shape, t.shape)) && !s.allBindable(b.outIdx) {
		b.unbindOutputs()
	}
	return nil
}

// Close releases the binding's ONNX Runtime resources. The tensors stay
// valid. Closing twice, or a nil Binding, is safe.
func (b *Binding) Close() error {
	if b == nil {
		return nil
	}
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.closed {
		return nil
	}
	b.release()
	delete(s.bindings, b)
	return nil
}

func (b *Binding) release() {
	if b.closed {
		return
	}
	b.closed = true
	destroyAll(b.outVals)
	for _, v := range b.inVals {
		v.Destroy()
	}
	b.inVals = nil
	b.io.Destroy()
}
