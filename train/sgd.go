package train

import "math"

// SGDConfig holds SGD's hyperparameters, as torch.optim.SGD takes them.
type SGDConfig struct {
	Momentum  float64
	Dampening float64
	// WeightDecay is L2 regularization coupled to the gradient:
	// g ← g + wd·p.
	WeightDecay float64
	Nesterov    bool
}

// Validate checks the hyperparameters as torch does.
func (c SGDConfig) Validate() error {
	switch {
	case !(c.Momentum >= 0):
		return errorf("sgd: momentum %v is negative", c.Momentum)
	case !(c.WeightDecay >= 0):
		return errorf("sgd: weight decay %v is negative", c.WeightDecay)
	case math.IsNaN(c.Dampening):
		return errorf("sgd: dampening is NaN")
	case c.Nesterov && (c.Momentum <= 0 || c.Dampening != 0):
		return errorf("sgd: Nesterov momentum requires a momentum and zero dampening")
	}
	return nil
}

// SGD is torch.optim.SGD (not maximizing). For each parameter p with
// gradient g:
//
//	d ← g + wd·p
//	b ← d on the first step, else μ·b + (1 − dampening)·d   (when μ ≠ 0)
//	d ← d + μ·b with Nesterov, else b                       (when μ ≠ 0)
//	p ← p − lr·d
//
// Arithmetic is float32, in torch's order, with every product rounded.
type SGD struct {
	cfg  SGDConfig
	step int64
	buf  map[string][]float32
}

// NewSGD returns an SGD optimizer, or an error for invalid
// hyperparameters.
func NewSGD(cfg SGDConfig) (*SGD, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &SGD{cfg: cfg, buf: map[string][]float32{}}, nil
}

// Config returns the optimizer's hyperparameters.
func (o *SGD) Config() SGDConfig { return o.cfg }

// Steps returns the number of steps taken.
func (o *SGD) Steps() int64 { return o.step }

// Step applies one SGD update to params.
func (o *SGD) Step(lr float64, params []*Param) error {
	if err := checkStep("sgd", lr, params); err != nil {
		return err
	}
	bufs, fresh := make([][]float32, len(params)), make([]bool, len(params))
	if o.cfg.Momentum != 0 {
		var err error
		if bufs, fresh, err = slotsFor("sgd", o.buf, params); err != nil {
			return err
		}
	}
	o.step++
	wd := float32(o.cfg.WeightDecay)
	mu := float32(o.cfg.Momentum)
	damp := float32(1 - o.cfg.Dampening)
	for i, p := range params {
		b := bufs[i]
		negLR := float32(-p.lr(lr))
		for j, g := range p.Grad {
			d := g
			if wd != 0 {
				d = d + float32(wd*p.Data[j])
			}
			if mu != 0 {
				if fresh[i] {
					b[j] = d
				} else {
					b[j] = float32(b[j]*mu) + float32(damp*d)
				}
				if o.cfg.Nesterov {
					d = d + float32(mu*b[j])
				} else {
					d = b[j]
				}
			}
			p.Data[j] = p.Data[j] + float32(negLR*d)
		}
	}
	return nil
}

// State returns a copy of the momentum buffers and step count.
func (o *SGD) State() *OptimizerState {
	nesterov := 0.0
	if o.cfg.Nesterov {
		nesterov = 1
	}
	s := &OptimizerState{
		Kind: "sgd",
		Step: o.step,
		Hyper: map[string]float64{
			"momentum": o.cfg.Momentum, "dampening": o.cfg.Dampening, "weight_decay": o.cfg.WeightDecay, "nesterov": nesterov,
		},
		Slots: map[string]map[string][]float32{},
	}
	if len(o.buf) > 0 {
		s.Slots["momentum_buffer"] = o.buf
	}
	return s.clone()
}

// SetState restores the momentum buffers and step count saved by State.
func (o *SGD) SetState(s *OptimizerState) error {
	slots, err := loadSlots(s, "sgd", "momentum_buffer")
	if err != nil {
		return err
	}
	o.step, o.buf = s.Step, slots[0]
	return nil
}
