package rewrite

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// largestFinite returns the threshold past which a value, rounded to a
// floating-point type, is stored as infinity.
func largestFinite(t dtype.Type) float64 {
	switch t {
	case dtype.Float16:
		return 65504 + 16 // values below 65520 round to 65504
	case dtype.BFloat16:
		return 0x1.fep127 + 0x1p119 // the halfway point past the largest
	}
	return math.MaxFloat32
}

// checkFactorValues reports the first NaN or infinity in a LoRA factor.
func checkFactorValues(name string, v []float32) error {
	for i, x := range v {
		if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
			return errorf("LoRA factor %q: value [%d] is %g; a factor must be finite", name, i, f)
		}
	}
	return nil
}

// product is c·A·B for A [in, rk] and B [rk, out], row-major.
type product struct {
	a, b        []float32
	in, rk, out int
	c           float64
}

// bound returns a bound on the elements of |c·A·B| that costs no more
// than reading A and B: max over rows i of |c|·Σ_k |A[i,k]|·max_j |B[k,j]|.
func (p product) bound() float64 {
	bmax := make([]float64, p.rk)
	for k := range bmax {
		for _, v := range p.b[k*p.out : (k+1)*p.out] {
			bmax[k] = max(bmax[k], math.Abs(float64(v)))
		}
	}
	bound := 0.0
	for i := range p.in {
		s := 0.0
		for k, a := range p.a[i*p.rk : (i+1)*p.rk] {
			s += math.Abs(float64(a)) * bmax[k]
		}
		bound = max(bound, math.Abs(p.c)*s)
	}
	return bound
}

// overflow computes c·A·B row by row and returns the first element [i, j]
// at which base(i, j) + c·A·B reaches limit, with its two terms, or ok
// false when there is none.
func (p product) overflow(limit float64, base func(i, j int) float64) (i, j int, w, d float64, ok bool) {
	row := make([]float64, p.out)
	for i := range p.in {
		clear(row)
		for k := range p.rk {
			aik := float64(p.a[i*p.rk+k])
			for j, bkj := range p.b[k*p.out : (k+1)*p.out] {
				row[j] += aik * float64(bkj)
			}
		}
		for j, d := range row {
			w := base(i, j)
			if v := w + p.c*d; math.IsNaN(v) || math.Abs(v) >= limit {
				return i, j, w, p.c * d, true
			}
		}
	}
	return 0, 0, 0, 0, false
}

// checkOverflow reports a fold whose update, added to its weight, leaves a
// value that the weight's type cannot hold (finite factors whose product
// is past float32 or float16): merged, the model would compute infinities
// and NaN. Nothing changes. Most folds are decided by the bound alone: a
// stored weight is below the limit, and adding a 1/1024 of the limit
// overflows only values at its very top, which real weights never hold;
// past that the weight is read and every element computed.
func (f fold) checkOverflow(m *graph.Model) error {
	l := f.l
	in, out := int(l.In), int(l.Out)
	p := product{a: f.a, b: f.b, in: in, rk: f.rk, out: out, c: f.scale / float64(l.Alpha)}
	limit := largestFinite(l.WeightDType)
	if p.bound() <= limit/1024 {
		return nil
	}
	vals, err := m.Float32s(m.Initializer(l.Weight))
	if err != nil {
		return layerErr(l, "%w", err)
	}
	base := func(i, j int) float64 {
		if l.WeightTransposed {
			return float64(vals[j*in+i])
		}
		return float64(vals[i*out+j])
	}
	if i, j, w, d, ok := p.overflow(limit, base); ok {
		return layerErr(l, "merging overflows %s: weight %q at [%d, %d] would be %g + %g (the LoRA factors are finite, their product is not storable)", l.WeightDType, l.Weight, i, j, w, d)
	}
	return nil
}

// checkBranchOverflow reports a module whose factors hold a NaN or an
// infinity, or whose s·A·B (B in graph layout) has an element past what
// the branch's type holds: the adapted model would compute infinities.
func checkBranchOverflow(s Site, module string, a, b []float32) error {
	if err := checkFactorValues(module+".lora_A", a); err != nil {
		return err
	}
	if err := checkFactorValues(module+".lora_B", b); err != nil {
		return err
	}
	rk := int(s.R) * s.Parts()
	if rk == 0 || s.Kind == KindConv {
		return nil // a convolution's update is bounded when it is merged (checkOverflow)
	}
	p := product{a: a, b: siteFullB(b, int(s.R), s), in: int(s.In), rk: rk, out: int(s.Out), c: s.Scale}
	limit := largestFinite(s.DType)
	if p.bound() < limit {
		return nil
	}
	if i, j, _, d, ok := p.overflow(limit, func(int, int) float64 { return 0 }); ok {
		return errorf("adapter module %q: s·lora_A·lora_B at [%d, %d] is %g, past %s (the factors are finite, their product is not)", module, i, j, d, s.DType)
	}
	return nil
}
