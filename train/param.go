package train

import (
	"math"

	"github.com/peftonnx/peftonnx/graph"
)

// Param is one trainable tensor: the values the optimizer updates in place
// and the gradient it reads. Data and Grad have the same length, the
// product of Shape.
type Param struct {
	// Name is the graph input that carries the tensor, such as
	// "model.layers.0.self_attn.q_proj.lora_A.weight".
	Name  string
	Shape []int64
	Data  []float32
	Grad  []float32
	// NoDecay exempts the parameter from weight decay. HF Trainer sets it
	// for biases and normalization weights; LoRA A and B matrices decay.
	NoDecay bool
	// LRScale multiplies the learning rate for this parameter (and so its
	// weight decay, as torch's per-group learning rates do); 0 means 1.
	// LoRA+ trains the B factors at a larger rate this way.
	LRScale float64
}

// lr returns the learning rate of p at the base rate lr.
func (p *Param) lr(lr float64) float64 {
	if p.LRScale != 0 {
		return lr * p.LRScale
	}
	return lr
}

// NewParam returns a parameter holding a copy of data, with a zero
// gradient. It panics if len(data) does not match shape: that is a
// programming error.
func NewParam(name string, shape []int64, data []float32) *Param {
	if graph.NumElements(shape) != int64(len(data)) {
		panic(errorf("param %q: %d values for shape %v", name, len(data), shape))
	}
	return &Param{
		Name:  name,
		Shape: append([]int64(nil), shape...),
		Data:  append([]float32(nil), data...),
		Grad:  make([]float32, len(data)),
	}
}

// ZeroGrad sets the gradients of params to zero.
func ZeroGrad(params []*Param) {
	for _, p := range params {
		clear(p.Grad)
	}
}

// checkStep checks an optimizer step of optimizer (named in messages) at
// learning rate lr: lr must be 0 or more, and no parameter's gradient and
// data lengths may differ.
func checkStep(optimizer string, lr float64, params []*Param) error {
	for _, p := range params {
		if len(p.Grad) != len(p.Data) {
			return errorf("param %q: gradient has %d values, parameter %d", p.Name, len(p.Grad), len(p.Data))
		}
		if math.IsNaN(p.LRScale) || math.IsInf(p.LRScale, 0) || p.LRScale < 0 {
			return errorf("param %q: learning-rate scale %v", p.Name, p.LRScale)
		}
	}
	if math.IsNaN(lr) || lr < 0 {
		return errorf("%s: learning rate %v", optimizer, lr)
	}
	return nil
}
