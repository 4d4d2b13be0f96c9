package train

import "math"

// AdamWConfig holds AdamW's hyperparameters. The zero value is not valid:
// start from DefaultAdamW.
type AdamWConfig struct {
	Beta1, Beta2 float64
	Eps          float64
	// WeightDecay is decoupled: each step multiplies a parameter by
	// 1 - lr·WeightDecay before the Adam update.
	WeightDecay float64
}

// DefaultAdamW returns HF Trainer's defaults: β1=0.9, β2=0.999, ε=1e-8 and
// weight decay 0. (torch.optim.AdamW's own default weight decay is 0.01;
// Trainer passes 0 unless told otherwise.)
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0}
}

// Validate checks the hyperparameters as torch does.
func (c AdamWConfig) Validate() error {
	switch {
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return errorf("adamw: beta1 %v is not in [0, 1)", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return errorf("adamw: beta2 %v is not in [0, 1)", c.Beta2)
	case !(c.Eps >= 0):
		return errorf("adamw: eps %v is negative", c.Eps)
	case !(c.WeightDecay >= 0):
		return errorf("adamw: weight decay %v is negative", c.WeightDecay)
	}
	return nil
}

// AdamW is torch.optim.AdamW (amsgrad off, not maximizing). For each
// parameter p with gradient g, at step t (counting from 1):
//
//	p ← p·(1 − lr·wd)
//	m ← m + (1−β1)·(g − m)                 (torch's lerp; = β1·m + (1−β1)·g)
//	v ← β2·v + (1−β2)·g²
//	denom ← sqrt(v) / sqrt(1 − β2^t) + ε
//	p ← p − (lr / (1 − β1^t)) · m / denom
//
// Like torch, it keeps parameters and moments in float32 and computes the
// scalars (bias corrections, step size) in float64, rounding each to
// float32 once. The element-wise arithmetic is done in float32 in the order
// of torch's single-tensor implementation, with every product rounded (no
// fused multiply-add), so a run is bit-for-bit reproducible on every
// platform. torch's vectorized CPU and CUDA kernels may fuse operations,
// so results agree with torch to a few float32 ulps, not bit for bit.
type AdamW struct {
	cfg  AdamWConfig
	step int64
	m, v map[string][]float32
}

// NewAdamW returns an AdamW optimizer, or an error for invalid
// hyperparameters.
func NewAdamW(cfg AdamWConfig) (*AdamW, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &AdamW{cfg: cfg, m: map[string][]float32{}, v: map[string][]float32{}}, nil
}

// Config returns the optimizer's hyperparameters.
func (o *AdamW) Config() AdamWConfig { return o.cfg }

// Steps returns the number of steps taken.
func (o *AdamW) Steps() int64 { return o.step }

// Step applies one AdamW update to params.
func (o *AdamW) Step(lr float64, params []*Param) error {
	if err := checkStep("adamw", lr, params); err != nil {
		return err
	}
	ms, _, err := slotsFor("adamw", o.m, params)
	if err != nil {
		return err
	}
	vs, _, err := slotsFor("adamw", o.v, params)
	if err != nil {
		return err
	}
	o.step++
	t := float64(o.step)
	bc1 := 1 - math.Pow(o.cfg.Beta1, t)
	bc2 := 1 - math.Pow(o.cfg.Beta2, t)
	bc2Sqrt := float32(math.Sqrt(bc2))
	eps := float32(o.cfg.Eps)
	w1 := float32(1 - o.cfg.Beta1) // lerp weight
	b2 := float32(o.cfg.Beta2)
	c2 := float32(1 - o.cfg.Beta2)
	for i, p := range params {
		m, v := ms[i], vs[i]
		lr := p.lr(lr)
		negStep := float32(-(lr / bc1))
		decay := float32(1 - lr*o.cfg.WeightDecay)
		doDecay := o.cfg.WeightDecay != 0 && !p.NoDecay
		for j, g := range p.Grad {
			x := p.Data[j]
			if doDecay {
				x = float32(x * decay)
			}
			m[j] = lerp32(m[j], g, w1)
			v[j] = float32(v[j]*b2) + float32(float32(c2*g)*g)
			denom := float32(sqrt32(v[j])/bc2Sqrt) + eps
			p.Data[j] = x + float32(negStep*m[j])/denom
		}
	}
	return nil
}

// lerp32 is torch's lerp for float32: start + w·(end − start) for |w| < 0.5,
// else end − (end − start)·(1 − w).
func lerp32(start, end, w float32) float32 {
	if w > -0.5 && w < 0.5 {
		return start + float32(w*(end-start))
	}
	return end - float32((end-start)*(1-w))
}

// sqrt32 is a correctly rounded float32 square root.
func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

// State returns a copy of the moments and step count.
func (o *AdamW) State() *OptimizerState {
	s := &OptimizerState{
		Kind: "adamw",
		Step: o.step,
		Hyper: map[string]float64{
			"beta1": o.cfg.Beta1, "beta2": o.cfg.Beta2, "eps": o.cfg.Eps, "weight_decay": o.cfg.WeightDecay,
		},
		Slots: map[string]map[string][]float32{"exp_avg": o.m, "exp_avg_sq": o.v},
	}
	return s.clone()
}

// SetState restores moments and step count saved by State. The
// hyperparameters stay those of the optimizer.
func (o *AdamW) SetState(s *OptimizerState) error {
	slots, err := loadSlots(s, "adamw", "exp_avg", "exp_avg_sq")
	if err != nil {
		return err
	}
	for name, m := range slots[0] {
		if v, ok := slots[1][name]; !ok || len(v) != len(m) {
			return errorf("adamw: optimizer state of %q has exp_avg but no matching exp_avg_sq", name)
		}
	}
	if len(slots[0]) != len(slots[1]) {
		return errorf("adamw: optimizer state has %d exp_avg and %d exp_avg_sq tensors", len(slots[0]), len(slots[1]))
	}
	o.step, o.m, o.v = s.Step, slots[0], slots[1]
	return nil
}
