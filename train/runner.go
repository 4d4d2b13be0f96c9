package train

import (
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// runner runs one session over and over through an rt.Binding, so that a
// step allocates next to nothing: float32 parameters are bound once, by
// reference to Param.Data, which the optimizer updates in place; 16-bit
// parameters are converted into their bound tensors; batch inputs are
// refilled in place while the batch's shape stays the same, and replaced
// when it changes; outputs are allocated by the first run and reused.
type runner struct {
	ses     *session.Session
	plan    []inputFeed
	outputs []string
	task    Task
	// targetDims are the scored output's declared dims, for the shape of
	// regression labels.
	targetDims []int64

	bind    *rt.Binding
	tensors map[string]*rt.Tensor // the bound inputs
}

// newRunner plans the feeds of ses (planFeeds). params are the trainable
// inputs, fields the data fields that the batches carry.
func newRunner(ses *session.Session, params map[string]bool, outputs []string, task Task, targetDims []int64, fields ...string) (*runner, error) {
	plan, err := planFeeds(ses.Inputs(), ses.Outputs(), params, fields)
	if err != nil {
		return nil, err
	}
	return &runner{ses: ses, plan: plan, outputs: outputs, task: task, targetDims: targetDims}, nil
}

// close releases the binding and the session.
func (r *runner) close() error {
	if r == nil {
		return nil
	}
	if r.bind != nil {
		r.bind.Close()
	}
	return r.ses.Close()
}

// run runs the session on b with the current parameter values. The
// returned tensors are reused by the next run: read them before that.
func (r *runner) run(params map[string]*Param, b Batch, training bool) (map[string]*rt.Tensor, error) {
	if r.bind == nil {
		in := make(map[string]*rt.Tensor, len(r.plan))
		for _, f := range r.plan {
			t, err := r.newTensor(f, params, b, training)
			if err != nil {
				return nil, errorf("input %s: %w", f.info.Name, err)
			}
			in[f.info.Name] = t
		}
		bind, err := r.ses.Bind(in, r.outputs)
		if err != nil {
			return nil, errorf("%w", err)
		}
		r.bind, r.tensors = bind, in
	} else {
		for _, f := range r.plan {
			if err := r.refill(f, params, b, training); err != nil {
				return nil, errorf("input %s: %w", f.info.Name, err)
			}
		}
	}
	out, err := r.bind.Run()
	if err != nil {
		return nil, errorf("%w", err)
	}
	return out, nil
}

// refill brings the bound tensor of f up to date for b.
func (r *runner) refill(f inputFeed, params map[string]*Param, b Batch, training bool) error {
	t := r.tensors[f.info.Name]
	switch f.kind {
	case feedParam:
		p := params[f.info.Name]
		switch t.DType() {
		case dtype.Float16:
			toHalf(t.Float16(), p.Data, half.Float32ToFloat16)
		case dtype.BFloat16:
			toHalf(t.BFloat16(), p.Data, half.Float32ToBFloat16)
		}
		// A float32 tensor is Param.Data itself.
		return nil
	case feedTraining:
		t.Bool()[0] = training
		return nil
	case feedDropout:
		u := dropoutUniforms(f, b, training)
		if slices.Equal(t.Shape(), dropoutShape(f, b)) {
			copy(t.Float32(), u)
			return nil
		}
		nt, err := rt.NewFloat32(dropoutShape(f, b), u)
		if err != nil {
			return err
		}
		return r.rebind(f, nt)
	}
	v, err := r.batchValues(f, b)
	if err != nil {
		return err
	}
	if slices.Equal(t.Shape(), v.shape) {
		switch {
		case v.ints != nil:
			return t.SetInt64s(v.ints)
		case v.floats != nil:
			return t.SetFloat64s(v.floats)
		}
		return nil // zeros stay zeros: a run does not write its inputs
	}
	nt, err := v.tensor(f.info.DType)
	if err != nil {
		return err
	}
	return r.rebind(f, nt)
}

// rebind binds nt as f's input in place of its tensor, whose shape the
// batch changed, and keeps it for the next batches.
func (r *runner) rebind(f inputFeed, nt *rt.Tensor) error {
	if err := r.bind.SetInput(f.info.Name, nt); err != nil {
		return err
	}
	r.tensors[f.info.Name] = nt
	return nil
}

// newTensor returns a fresh tensor for f.
func (r *runner) newTensor(f inputFeed, params map[string]*Param, b Batch, training bool) (*rt.Tensor, error) {
	switch f.kind {
	case feedParam:
		return paramTensor(params[f.info.Name], f.info.DType)
	case feedTraining:
		return rt.NewBool(nil, []bool{training})
	case feedDropout:
		return rt.NewFloat32(dropoutShape(f, b), dropoutUniforms(f, b, training))
	}
	v, err := r.batchValues(f, b)
	if err != nil {
		return nil, err
	}
	return v.tensor(f.info.DType)
}

// batchValue is the value of one batch input: integers, floats, or zeros
// (both nil), of a shape.
type batchValue struct {
	ints   []int64
	floats []float64
	shape  []int64
}

// tensor returns a new tensor of element type elem that holds v.
func (v batchValue) tensor(elem dtype.Type) (*rt.Tensor, error) {
	switch {
	case v.ints != nil:
		return rt.FromInt64s(elem, v.shape, v.ints)
	case v.floats != nil:
		return rt.FromFloat64s(elem, v.shape, v.floats)
	}
	return rt.Zeros(elem, v.shape)
}

// batchValues returns the value of a batch input for b.
func (r *runner) batchValues(f inputFeed, b Batch) (batchValue, error) {
	return batchValues(f, b, r.task, r.targetDims)
}

// batchValues returns the value of input f for batch b, in a run of task
// whose scored output has the declared dims targetDims.
func batchValues(f inputFeed, b Batch, task Task, targetDims []int64) (batchValue, error) {
	shape := []int64{int64(b.Size), int64(b.SeqLen)}
	switch f.kind {
	case feedIDs:
		return batchValue{ints: b.InputIDs, shape: shape}, nil
	case feedMask:
		return batchValue{ints: b.AttentionMask, shape: shape}, nil
	case feedPositions:
		return batchValue{ints: b.PositionIDs(), shape: shape}, nil
	case feedField:
		v, ok := b.Inputs[f.field]
		if !ok {
			return batchValue{}, errorf("the batch does not carry the data's %q", f.field)
		}
		if !f.perToken {
			shape = append([]int64{int64(b.Size)}, f.info.Shape[1:]...)
		}
		return batchValue{floats: v, shape: shape}, nil
	case feedZeros:
		s, err := f.slot.FeedShape(b.Size, b.SeqLen, 0)
		if err != nil {
			return batchValue{}, err
		}
		return batchValue{shape: s}, nil
	case feedLabels:
		switch task {
		case SequenceClassification:
			return batchValue{ints: b.Classes, shape: []int64{int64(b.Size)}}, nil
		case Regression:
			if len(b.Targets) == 0 {
				return batchValue{}, errorf("the batch has no regression targets")
			}
			ts, err := targetShape(targetDims, b.Size, len(b.Targets)/b.Size)
			floats := make([]float64, len(b.Targets))
			for i, x := range b.Targets {
				floats[i] = float64(x)
			}
			return batchValue{floats: floats, shape: ts}, err
		}
		return batchValue{ints: b.Labels, shape: shape}, nil
	}
	return batchValue{}, errorf("no batch value for input kind %d", f.kind)
}

// paramTensor wraps a parameter's values for a run: without a copy for a
// float32 input (the optimizer updates the same memory), converted for a
// 16-bit one.
func paramTensor(p *Param, elem dtype.Type) (*rt.Tensor, error) {
	switch elem {
	case dtype.Float32:
		return rt.NewFloat32(p.Shape, p.Data)
	case dtype.Float16:
		h := make([]uint16, len(p.Data))
		toHalf(h, p.Data, half.Float32ToFloat16)
		return rt.NewFloat16(p.Shape, h)
	case dtype.BFloat16:
		h := make([]uint16, len(p.Data))
		toHalf(h, p.Data, half.Float32ToBFloat16)
		return rt.NewBFloat16(p.Shape, h)
	}
	return nil, errorf("parameter %q is %s: the trainer feeds float32, float16 and bfloat16 parameters", p.Name, elem)
}

// toHalf rounds src into dst with conv.
func toHalf(dst []uint16, src []float32, conv func(float32) uint16) {
	for i, v := range src {
		dst[i] = conv(v)
	}
}

// dropoutShape is the shape of a seeded dropout's draws for b: [rows,
// sequence, the layer's input width].
func dropoutShape(f inputFeed, b Batch) []int64 {
	return []int64{int64(b.Size), int64(b.SeqLen), f.info.Shape[2]}
}

// dropoutUniforms returns the draws of the seeded dropout that f feeds,
// for b: those b.Dropout says in training, zeros (which the graph does not
// read: out of training its rate is 0) otherwise.
func dropoutUniforms(f inputFeed, b Batch, training bool) []float32 {
	if !training || b.Dropout == nil {
		return make([]float32, b.Size*b.SeqLen*int(f.info.Shape[2]))
	}
	module := strings.TrimSuffix(f.info.Name, DropoutUniformSuffix)
	return b.Dropout.Uniforms(module, b.Size, b.SeqLen, 0, int(f.info.Shape[2]))
}
