package train

import (
	"math"
	"slices"
	"strings"
	"testing"
)

// adamwReference is AdamW written from the paper's formula in float64,
// independently of the implementation.
func adamwReference(cfg AdamWConfig, lrs []float64, p0 []float64, grads [][]float64) []float64 {
	p := slices.Clone(p0)
	m := make([]float64, len(p))
	v := make([]float64, len(p))
	for t, lr := range lrs {
		step := float64(t + 1)
		for i := range p {
			g := grads[t][i]
			p[i] -= lr * cfg.WeightDecay * p[i]
			m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*g
			v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*g*g
			mhat := m[i] / (1 - math.Pow(cfg.Beta1, step))
			vhat := v[i] / (1 - math.Pow(cfg.Beta2, step))
			// torch adds eps to sqrt(v)/sqrt(bc2), i.e. to sqrt(vhat).
			p[i] -= lr * mhat / (math.Sqrt(vhat) + cfg.Eps)
		}
	}
	return p
}

func toF32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

func closeRel(got float32, want, rel float64) bool {
	return math.Abs(float64(got)-want) <= rel*math.Max(1e-3, math.Abs(want))
}

func TestAdamW(t *testing.T) {
	grads := [][]float64{{0.5, -1.25}, {0.1, 2}, {-0.3, 0.05}}
	tests := []struct {
		name string
		cfg  AdamWConfig
		lrs  []float64
	}{
		{"defaults", DefaultAdamW(), []float64{1e-3, 1e-3, 1e-3}},
		{"weight decay", AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}, []float64{1e-2, 5e-3, 2e-3}},
		{"large beta1 complement", AdamWConfig{Beta1: 0.3, Beta2: 0.5, Eps: 1e-6, WeightDecay: 0.1}, []float64{0.1, 0.1, 0.05}},
		{"zero lr", DefaultAdamW(), []float64{0, 0, 0}},
	}
	p0 := []float64{1, -2}
	for i, tt := range tests {
		o, err := NewAdamW(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := NewParam("w", []int64{2}, toF32(p0))
		for s, lr := range tt.lrs {
			copy(p.Grad, toF32(grads[s]))
			if err := o.Step(lr, []*Param{p}); err != nil {
				t.Fatal(err)
			}
		}
		want := adamwReference(tt.cfg, tt.lrs, p0, grads)
		for j := range want {
			if !closeRel(p.Data[j], want[j], 1e-6) {
				t.Errorf("unexpected result for test %d (%s), element %d: got %.9g want %.9g", i, tt.name, j, p.Data[j], want[j])
			}
		}
		if o.Steps() != int64(len(tt.lrs)) {
			t.Errorf("test %d: got %d steps want %d", i, o.Steps(), len(tt.lrs))
		}
	}
}

func TestAdamWNoDecay(t *testing.T) {
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.5}
	o, _ := NewAdamW(cfg)
	decayed := NewParam("a", []int64{1}, []float32{1})
	kept := NewParam("b", []int64{1}, []float32{1})
	kept.NoDecay = true
	if err := o.Step(0.1, []*Param{decayed, kept}); err != nil {
		t.Fatal(err)
	}
	// Zero gradients: the Adam part is 0/(0+eps) = 0, so only decay acts.
	if got, want := decayed.Data[0], float32(1-0.1*0.5); got != want {
		t.Errorf("decayed: got %v want %v", got, want)
	}
	if got := kept.Data[0]; got != 1 {
		t.Errorf("no-decay param: got %v want 1", got)
	}
}

// TestAdamWFirstStep checks the known property of Adam's first step: with
// bias correction it moves each element by lr·sign(g) (for |g| ≫ ε).
func TestAdamWFirstStep(t *testing.T) {
	o, _ := NewAdamW(DefaultAdamW())
	p := NewParam("w", []int64{3}, []float32{0, 0, 0})
	copy(p.Grad, []float32{3, -0.02, 100})
	if err := o.Step(0.01, []*Param{p}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{-0.01, 0.01, -0.01} {
		if !closeRel(p.Data[i], want, 1e-5) {
			t.Errorf("element %d: got %v want %v", i, p.Data[i], want)
		}
	}
}

func sgdReference(cfg SGDConfig, lr float64, p0 []float64, grads [][]float64) []float64 {
	p := slices.Clone(p0)
	var buf []float64
	for t := range grads {
		d := make([]float64, len(p))
		for i := range p {
			d[i] = grads[t][i] + cfg.WeightDecay*p[i]
		}
		if cfg.Momentum != 0 {
			if buf == nil {
				buf = slices.Clone(d)
			} else {
				for i := range buf {
					buf[i] = cfg.Momentum*buf[i] + (1-cfg.Dampening)*d[i]
				}
			}
			for i := range d {
				if cfg.Nesterov {
					d[i] += cfg.Momentum * buf[i]
				} else {
					d[i] = buf[i]
				}
			}
		}
		for i := range p {
			p[i] -= lr * d[i]
		}
	}
	return p
}

func TestSGD(t *testing.T) {
	grads := [][]float64{{0.5, -1.25}, {0.1, 2}, {-0.3, 0.05}}
	p0 := []float64{1, -2}
	tests := []struct {
		name string
		cfg  SGDConfig
	}{
		{"plain", SGDConfig{}},
		{"momentum", SGDConfig{Momentum: 0.9}},
		{"momentum dampening decay", SGDConfig{Momentum: 0.8, Dampening: 0.25, WeightDecay: 0.1}},
		{"nesterov", SGDConfig{Momentum: 0.9, Nesterov: true, WeightDecay: 0.01}},
	}
	for i, tt := range tests {
		o, err := NewSGD(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		p := NewParam("w", []int64{2}, toF32(p0))
		for s := range grads {
			copy(p.Grad, toF32(grads[s]))
			if err := o.Step(0.1, []*Param{p}); err != nil {
				t.Fatal(err)
			}
		}
		want := sgdReference(tt.cfg, 0.1, p0, grads)
		for j := range want {
			if !closeRel(p.Data[j], want[j], 1e-6) {
				t.Errorf("unexpected result for test %d (%s), element %d: got %.9g want %.9g", i, tt.name, j, p.Data[j], want[j])
			}
		}
	}
}

func TestOptimizerConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"adamw beta1", func() error { _, err := NewAdamW(AdamWConfig{Beta1: 1, Beta2: 0.9}); return err }(), "beta1"},
		{"adamw beta2", func() error { _, err := NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: -1}); return err }(), "beta2"},
		{"adamw eps", func() error { _, err := NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: 0.9, Eps: -1}); return err }(), "eps"},
		{"adamw wd", func() error {
			_, err := NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: 0.9, WeightDecay: math.NaN()})
			return err
		}(), "weight decay"},
		{"sgd nesterov", func() error { _, err := NewSGD(SGDConfig{Nesterov: true}); return err }(), "Nesterov"},
		{"sgd nesterov dampening", func() error { _, err := NewSGD(SGDConfig{Momentum: 0.9, Dampening: 0.1, Nesterov: true}); return err }(), "Nesterov"},
		{"sgd momentum", func() error { _, err := NewSGD(SGDConfig{Momentum: -0.1}); return err }(), "momentum"},
	}
	for i, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) || !strings.HasPrefix(tt.err.Error(), "train: ") {
			t.Errorf("test %d (%s): got error %v, want one mentioning %q", i, tt.name, tt.err, tt.want)
		}
	}
}

// TestOptimizerResume checks that saving the state after one step and
// loading it into a fresh optimizer gives bit-identical parameters after
// three steps.
func TestOptimizerResume(t *testing.T) {
	grads := [][]float32{{0.5, -1.25, 3}, {0.1, 2, -1}, {-0.3, 0.05, 0.7}}
	makers := []struct {
		name string
		new  func() Optimizer
	}{
		{"adamw", func() Optimizer {
			o, _ := NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01})
			return o
		}},
		{"sgd", func() Optimizer { o, _ := NewSGD(SGDConfig{Momentum: 0.9, Nesterov: true}); return o }},
	}
	for i, mk := range makers {
		run := func(o Optimizer, p []*Param, from, to int) {
			for s := from; s < to; s++ {
				copy(p[0].Grad, grads[s][:2])
				copy(p[1].Grad, grads[s][2:])
				if err := o.Step(0.01, p); err != nil {
					t.Fatal(err)
				}
			}
		}
		newParams := func() []*Param {
			return []*Param{NewParam("a", []int64{2}, []float32{1, 2}), NewParam("b", []int64{1, 1}, []float32{-1})}
		}
		straight := newParams()
		run(mk.new(), straight, 0, 3)

		resumed := newParams()
		o := mk.new()
		run(o, resumed, 0, 1)
		b, err := o.State().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var st OptimizerState
		if err := st.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		o2 := mk.new()
		if err := o2.SetState(&st); err != nil {
			t.Fatal(err)
		}
		if o2.Steps() != 1 {
			t.Errorf("test %d (%s): got %d steps after load want 1", i, mk.name, o2.Steps())
		}
		run(o2, resumed, 1, 3)
		for k := range straight {
			if !slices.Equal(straight[k].Data, resumed[k].Data) {
				t.Errorf("test %d (%s): param %s: resumed %v, straight run %v", i, mk.name, straight[k].Name, resumed[k].Data, straight[k].Data)
			}
		}
		// The encoding is deterministic.
		b2, _ := o2.State().MarshalBinary()
		b3, _ := o2.State().MarshalBinary()
		if string(b2) != string(b3) {
			t.Errorf("test %d (%s): two encodings of one state differ", i, mk.name)
		}
	}
}

func TestOptimizerStateErrors(t *testing.T) {
	adam, _ := NewAdamW(DefaultAdamW())
	sgd, _ := NewSGD(SGDConfig{Momentum: 0.9})
	p := NewParam("w", []int64{2}, []float32{1, 2})
	if err := sgd.Step(0.1, []*Param{p}); err != nil {
		t.Fatal(err)
	}
	wrongLen := adam.State()
	wrongLen.Slots["exp_avg"]["w"] = []float32{0}
	wrongLen.Slots["exp_avg_sq"]["w"] = []float32{0}
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"kind", func() error { return adam.SetState(sgd.State()) }, `cannot load the state of a "sgd" optimizer`},
		{"short", func() error { var s OptimizerState; return s.UnmarshalBinary([]byte{1, 2}) }, "too short"},
		{"header", func() error { var s OptimizerState; return s.UnmarshalBinary([]byte{200, 0, 0, 0, 0, 0, 0, 0, '{'}) }, "header length 200"},
		{"length", func() error {
			o, _ := NewAdamW(DefaultAdamW())
			if err := o.SetState(wrongLen); err != nil {
				return err
			}
			return o.Step(0.1, []*Param{p})
		}, `state of "w" has 1 values, parameter has 2`},
		{"grad length", func() error {
			q := NewParam("q", []int64{2}, []float32{1, 2})
			q.Grad = q.Grad[:1]
			return adam.Step(0.1, []*Param{q})
		}, "gradient has 1 values"},
	}
	for i, tt := range tests {
		err := tt.err()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.want)
		}
	}
}

// TestLRScale checks that a parameter's LRScale acts as its own learning
// rate: a scaled parameter stepped at lr ends where an unscaled one
// stepped at lr·scale does, in the same optimizer step as an unscaled
// neighbour that keeps lr, for AdamW (weight decay included) and SGD.
func TestLRScale(t *testing.T) {
	grads := [][]float32{{0.5, -1.25}, {0.1, 2}, {-0.3, 0.05}}
	const lr, scale = 1e-2, 4.0
	for _, name := range []string{"adamw", "sgd"} {
		newOpt := func() Optimizer {
			if name == "adamw" {
				o, _ := NewAdamW(AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1})
				return o
			}
			o, _ := NewSGD(SGDConfig{Momentum: 0.9, WeightDecay: 0.1})
			return o
		}
		scaled, plain, ref := newOpt(), newOpt(), newOpt()
		a := NewParam("a", []int64{2}, []float32{1, -2})
		b := NewParam("b", []int64{2}, []float32{1, -2})
		b.LRScale = scale
		want := NewParam("b", []int64{2}, []float32{1, -2})
		keep := NewParam("a", []int64{2}, []float32{1, -2})
		for _, g := range grads {
			copy(a.Grad, g)
			copy(b.Grad, g)
			copy(want.Grad, g)
			copy(keep.Grad, g)
			if err := scaled.Step(lr, []*Param{a, b}); err != nil {
				t.Fatal(err)
			}
			if err := ref.Step(lr*scale, []*Param{want}); err != nil {
				t.Fatal(err)
			}
			if err := plain.Step(lr, []*Param{keep}); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(b.Data, want.Data) {
			t.Errorf("%s: scaled parameter %v, want %v (stepped at lr·scale)", name, b.Data, want.Data)
		}
		if !slices.Equal(a.Data, keep.Data) {
			t.Errorf("%s: unscaled neighbour %v, want %v", name, a.Data, keep.Data)
		}
		if slices.Equal(a.Data, b.Data) {
			t.Errorf("%s: the scale changed nothing", name)
		}
	}
	o, _ := NewAdamW(DefaultAdamW())
	p := NewParam("p", []int64{1}, []float32{1})
	p.LRScale = -1
	if err := o.Step(1e-3, []*Param{p}); err == nil || !strings.Contains(err.Error(), `param "p": learning-rate scale -1`) {
		t.Errorf("negative scale: got %v", err)
	}
}
