package train

import (
	"math"
	"strings"
)

// ScheduleKind names a learning-rate schedule, as HF's get_scheduler does.
type ScheduleKind string

// The schedules.
const (
	Constant           ScheduleKind = "constant"
	ConstantWithWarmup ScheduleKind = "constant_with_warmup"
	Linear             ScheduleKind = "linear"
	Cosine             ScheduleKind = "cosine"
)

// Schedule is a learning-rate schedule: HF transformers' get_scheduler
// applied to a base rate. LR(step) is the rate for the optimizer step that
// follows `step` completed steps, so the first step uses LR(0), exactly as
// HF Trainer (optimizer.step, then scheduler.step) does. With warmup this
// means the first step runs at rate 0.
type Schedule struct {
	Kind   ScheduleKind
	BaseLR float64
	// Warmup is the number of warmup steps; Total the number of optimizer
	// steps in the run.
	Warmup, Total int
}

// NewSchedule returns a schedule of the given kind. As the train command
// promises, "constant" with warmup steps becomes "constant_with_warmup"
// (HF's "constant" would ignore the warmup).
func NewSchedule(kind string, baseLR float64, warmup, total int) (*Schedule, error) {
	k := ScheduleKind(strings.ToLower(kind))
	switch k {
	case Constant:
		if warmup > 0 {
			k = ConstantWithWarmup
		}
	case ConstantWithWarmup, Linear, Cosine:
	default:
		return nil, errorf("unknown schedule %q (want constant, linear or cosine)", kind)
	}
	switch {
	case math.IsNaN(baseLR) || math.IsInf(baseLR, 0) || baseLR < 0:
		return nil, errorf("learning rate %v", baseLR)
	case warmup < 0:
		return nil, errorf("warmup of %d steps", warmup)
	case total < 0:
		return nil, errorf("schedule over %d steps", total)
	}
	return &Schedule{Kind: k, BaseLR: baseLR, Warmup: warmup, Total: total}, nil
}

// LR returns the learning rate for the step after `step` completed steps.
func (s *Schedule) LR(step int) float64 { return s.BaseLR * s.Factor(step) }

// Factor returns the multiplier of the base rate at step (HF's lr_lambda).
func (s *Schedule) Factor(step int) float64 {
	// The formulas mirror transformers.optimization, in float64 as Python
	// computes them.
	warm := float64(step) / float64(max(1, s.Warmup))
	switch s.Kind {
	case Constant:
		return 1
	case ConstantWithWarmup:
		if step < s.Warmup {
			return warm
		}
		return 1
	case Linear:
		if step < s.Warmup {
			return warm
		}
		return max(0, float64(s.Total-step)/float64(max(1, s.Total-s.Warmup)))
	case Cosine:
		if step < s.Warmup {
			return warm
		}
		const numCycles = 0.5
		progress := float64(step-s.Warmup) / float64(max(1, s.Total-s.Warmup))
		return max(0, 0.5*(1+math.Cos(math.Pi*numCycles*2*progress)))
	}
	panic(errorf("schedule kind %q", s.Kind))
}
