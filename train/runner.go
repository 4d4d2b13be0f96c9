package train

import (
	"slices"

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
	plan    []feed
	outputs []string
	task    Task
	// targetDims are the scored output's declared dims, for the shape of
	// regression labels.
	targetDims []int64

	bind    *rt.Binding
	tensors map[string]*rt.Tensor // the bound inputs
}

// newRunner plans the feeds of ses. params are the trainable inputs.
func newRunner(ses *session.Session, params map[string]bool, outputs []string, task Task, targetDims []int64) (*runner, error) {
	plan, err := planFeeds(ses.Inputs(), params)
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
				return nil, errorf("input %s: %v", f.info.Name, unprefixed(err))
			}
			in[f.info.Name] = t
		}
		bind, err := r.ses.Bind(in, r.outputs)
		if err != nil {
			return nil, errorf("%v", err)
		}
		r.bind, r.tensors = bind, in
	} else {
		for _, f := range r.plan {
			if err := r.refill(f, params, b, training); err != nil {
				return nil, errorf("input %s: %v", f.info.Name, unprefixed(err))
			}
		}
	}
	out, err := r.bind.Run()
	if err != nil {
		return nil, errorf("%v", err)
	}
	return out, nil
}

// refill brings the bound tensor of f up to date for b.
func (r *runner) refill(f feed, params map[string]*Param, b Batch, training bool) error {
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
	}
	data, shape, err := r.batchValues(f, b)
	if err != nil {
		return err
	}
	if slices.Equal(t.Shape(), shape) {
		switch v := data.(type) {
		case []int64:
			copy(t.Int64(), v)
		case []float32:
			copy(t.Float32(), v)
		}
		return nil
	}
	nt, err := newBatchTensor(f, data, shape)
	if err != nil {
		return err
	}
	if err := r.bind.SetInput(f.info.Name, nt); err != nil {
		return err
	}
	r.tensors[f.info.Name] = nt
	return nil
}

// newTensor returns a fresh tensor for f.
func (r *runner) newTensor(f feed, params map[string]*Param, b Batch, training bool) (*rt.Tensor, error) {
	switch f.kind {
	case feedParam:
		return paramTensor(params[f.info.Name], f.info.DType)
	case feedTraining:
		return rt.NewBool(nil, []bool{training})
	}
	data, shape, err := r.batchValues(f, b)
	if err != nil {
		return nil, err
	}
	return newBatchTensor(f, data, shape)
}

// newBatchTensor returns a tensor holding a copy of data ([]int64,
// []float32, or nil for zeros of f's type).
func newBatchTensor(f feed, data any, shape []int64) (*rt.Tensor, error) {
	switch v := data.(type) {
	case []int64:
		return rt.NewInt64(shape, slices.Clone(v))
	case []float32:
		return rt.NewFloat32(shape, slices.Clone(v))
	}
	return rt.Zeros(f.info.DType, shape)
}

// batchValues returns the data and shape of a batch input for b: []int64,
// []float32, or nil for an all-zero tensor (an empty KV cache, token type
// ids).
func (r *runner) batchValues(f feed, b Batch) (any, []int64, error) {
	shape := []int64{int64(b.Size), int64(b.SeqLen)}
	switch f.kind {
	case feedInputIDs:
		return b.InputIDs, shape, nil
	case feedAttentionMask:
		return b.AttentionMask, shape, nil
	case feedPositionIDs:
		return b.PositionIDs(), shape, nil
	case feedTokenTypeIDs:
		return nil, shape, nil
	case feedPast:
		ps, err := pastShape(f.info, b.Size)
		return nil, ps, err
	case feedLabels:
		switch r.task {
		case SequenceClassification:
			return b.Classes, []int64{int64(b.Size)}, nil
		case Regression:
			if len(b.Targets) == 0 {
				return nil, nil, errorf("the batch has no regression targets")
			}
			ts, err := targetShape(r.targetDims, b.Size, len(b.Targets)/b.Size)
			return b.Targets, ts, err
		}
		return b.Labels, shape, nil
	}
	return nil, nil, errorf("no batch value for input kind %d", f.kind)
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
