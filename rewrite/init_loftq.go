package rewrite

import (
	"cmp"
	"math"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
)

// LoftQ (HF PEFT's init_lora_weights "loftq", Li et al. 2023) starts A
// and B so that the quantized base plus the branch is close to the float
// weight W, closer than the quantized base alone. With Q the block-wise
// round to nearest of package quant and D its dequantization, it
// alternates, T times, from L·R = 0:
//
//	deq = D(Q(W − s·A·B)); s·A·B = the best rank-r approximation of W − deq
//
// with W the [in, out] weight as the layer computes (Gemm's alpha
// included), W − deq = U·S·Vᵀ (its leading r triplets by topSVD) and
// A = U_r·√(S_r/s), B = √(S_r/s)·V_rᵀ:
// PEFT's L = U·√S and R = √S·Vh (lora_B = L, lora_A = R), divided by the
// scaling as PiSSA's split is (init_pissa.go), so that deq + s·A·B
// approximates W whatever lora_alpha is (PEFT leaves the scaling out,
// which is the same for s = 1). The alternation need not descend: round
// to nearest with each block's scale taken afresh from W − s·A·B is not
// the nearest point of one fixed grid, and at 2 bits the error can rise
// after a few iterations. So the iteration with the least ‖W − deq −
// s·A·B‖_F is kept (PEFT keeps the last). The base weight becomes deq: the float
// matrix in the weight's own type, or, with LoftQOptions.Pack, a
// com.microsoft MatMulNBits layer holding Q(W − s·A·B) in place of the
// MatMul or Gemm, the QLoRA form that the int4 layers of linear_nbits.go
// train in.
//
// The site records A₀ and B₀ as a PiSSA site does (Site.InitialA), so
// Merge folds s·A·B into deq and ExtractAdapter writes the rank-2r delta
// s·(A·B − A₀·B₀). That delta is exact on deq + s·A₀·B₀, the weight the
// initialisation approximates W by; on the original W it gives the adapted
// model plus LoftQ's remaining error W − deq − s·A₀·B₀. An int4 base
// (MatMulNBits already) is refused: its float W is gone.

// LoftQOptions says how InjectLoRA's init "loftq" quantizes (WithLoftQ).
type LoftQOptions struct {
	// Bits is the width of a code: 2, 4 or 8. Zero means 4.
	Bits int
	// BlockSize is the number of input features that share a scale: a
	// power of two of at least 16. Zero means 32.
	BlockSize int
	// Iterations is LoftQ's T, PEFT's loftq_iter. Zero means 1.
	Iterations int
	// Pack writes each base weight as a MatMulNBits layer; otherwise the
	// dequantized float weight replaces W in its own initializer.
	Pack bool
}

// maxLoftQIterations bounds LoftQOptions.Iterations: each is an SVD of
// every adapted weight.
const maxLoftQIterations = 100

// withDefaults fills the zero fields of o.
func (o LoftQOptions) withDefaults() LoftQOptions {
	o.Bits = cmp.Or(o.Bits, 4)
	o.BlockSize = cmp.Or(o.BlockSize, 32)
	o.Iterations = cmp.Or(o.Iterations, 1)
	return o
}

// check reports the first option out of range.
func (o LoftQOptions) check() error {
	switch {
	case !quant.SupportedBits(o.Bits):
		return errorf("loftq: %d bits: MatMulNBits takes 2, 4 or 8", o.Bits)
	case !quant.ValidBlockSize(o.BlockSize):
		return errorf("loftq: block size %d: MatMulNBits wants a power of two of at least 16", o.BlockSize)
	case o.Iterations < 1 || o.Iterations > maxLoftQIterations:
		return errorf("loftq: %d iterations: want 1 to %d", o.Iterations, maxLoftQIterations)
	}
	return nil
}

// WithLoftQ sets how InjectLoRA's init "loftq" quantizes the base; without
// it, 4 bits in blocks of 32, one iteration, a float base.
func WithLoftQ(lo LoftQOptions) Option {
	return func(o *options) error {
		lo = lo.withDefaults()
		if err := lo.check(); err != nil {
			return err
		}
		o.loftq = &lo
		return nil
	}
}

// loftqStart is what LoftQ computed for one layer.
type loftqStart struct {
	a, b []float32     // A₀ [in, r] and B₀ [r, out]
	w    *quant.Weight // the base quantized in the same iteration
	deq  []float32     // its dequantization [in, out]
	// errs[t] is ‖W − deq − s·A·B‖_F after iteration t+1, with A and B
	// in float64, and best the least of them, the iteration kept.
	errs []float64
	best float64
	// plain is ‖W − D(Q(W))‖_F, plain round to nearest (the first
	// iteration's base), and norm ‖W‖_F.
	plain, norm float64
}

// LoftQReport is how close init loftq's starts are to the float weights,
// over all the layers it initialised: the relative Frobenius errors
// √(Σ‖W − deq − s·A₀·B₀‖² / Σ‖W‖²) and, for plain round to nearest in the
// same layout, √(Σ‖W − D(Q(W))‖² / Σ‖W‖²).
type LoftQReport struct {
	Options                 LoftQOptions
	Layers                  int
	RelError, PlainRelError float64
}

// loftqReportOf sums up the LoftQ plans, or returns nil where there are
// none.
func loftqReportOf(plans map[string]*modulePlan, o LoftQOptions) *LoftQReport {
	var errSq, plainSq, normSq float64
	n := 0
	for _, p := range plans {
		if st := p.loftq; st != nil {
			n++
			errSq, plainSq, normSq = errSq+st.best*st.best, plainSq+st.plain*st.plain, normSq+st.norm*st.norm
		}
	}
	if n == 0 {
		return nil
	}
	return &LoftQReport{Options: o, Layers: n, RelError: safeRatio(errSq, normSq), PlainRelError: safeRatio(plainSq, normSq)}
}

// loftqFactors runs LoftQ on the [in, out] matrix w for rank r and
// scaling scale, quantizing in the layer's type dt.
func loftqFactors(w []float64, in, out, r int, scale float64, dt dtype.Type, o LoftQOptions) (*loftqStart, error) {
	if r > min(in, out) {
		return nil, errorf("rank %d exceeds the %d×%d weight's %d", r, in, out, min(in, out))
	}
	qo := quant.Options{Bits: o.Bits, BlockSize: o.BlockSize, ScaleType: dt}
	lowRank := make([]float64, in*out) // s·A·B
	st := &loftqStart{}
	var a64, b64, basis []float64
	target := make([]float32, in*out)
	for t := 0; t < o.Iterations; t++ {
		for i, v := range w {
			target[i] = float32(v - lowRank[i])
		}
		q, err := quant.Quantize(target, in, out, qo)
		if err != nil {
			return nil, err
		}
		deq, err := q.Dequantize()
		if err != nil {
			return nil, err
		}
		res := make([]float64, in*out)
		for i, v := range w {
			res[i] = v - float64(deq[i])
		}
		if t == 0 {
			for i, v := range w {
				st.plain += res[i] * res[i]
				st.norm += v * v
			}
			st.plain, st.norm = math.Sqrt(st.plain), math.Sqrt(st.norm)
		}
		var u, s, v []float64
		u, s, v, basis, err = topSVD(res, in, out, r, basis)
		if err != nil {
			return nil, err
		}
		a64, b64 = svdFactors(u, s, v, r, in, out, r, scale)
		var errSq float64
		for i := 0; i < in; i++ {
			for c := 0; c < out; c++ {
				ab := 0.0
				for j := 0; j < r; j++ {
					ab += a64[i*r+j] * b64[j*out+c]
				}
				lowRank[i*out+c] = scale * ab
				d := res[i*out+c] - lowRank[i*out+c]
				errSq += d * d
			}
		}
		e := math.Sqrt(errSq)
		if len(st.errs) == 0 || e < st.best {
			st.w, st.deq, st.best = q, deq, e
			st.a, st.b = narrow(a64), narrow(b64)
		}
		st.errs = append(st.errs, e)
	}
	return st, nil
}

// checkLoftQ refuses the layers that LoftQ does not take beyond those
// checkInitFromWeights refuses, for options o.
func checkLoftQ(m *graph.Model, l Linear, o LoftQOptions) error {
	if !o.Pack {
		return nil
	}
	if m.Input(l.Weight) != nil {
		return layerErr(l, "init loftq: weight %q is also a graph input, which a packed MatMulNBits weight cannot replace; leave out --bits and --block-size for a float base", l.Weight)
	}
	if l.DType != dtype.Float32 && l.DType != dtype.Float16 {
		return layerErr(l, "init loftq: the layer computes in %s, and ONNX Runtime's CPU MatMulNBits takes float32 or float16; leave out --bits and --block-size for a float base", l.DType)
	}
	if l.Op != "Gemm" {
		return nil
	}
	n := l.Node
	switch {
	case l.TransA:
		return layerErr(l, "init loftq: a Gemm with transA=1 has no MatMulNBits form; leave out --bits and --block-size for a float base")
	case len(n.Input) > 2 && n.Input[2] != "" && (l.Bias == "" || m.Initializer(n.Input[2]) == nil):
		return layerErr(l, "init loftq: Gemm's C %q is not a bias initializer, which MatMulNBits needs; leave out --bits and --block-size for a float base", n.Input[2])
	case l.Bias != "" && l.Beta != 1:
		return layerErr(l, "init loftq: Gemm's beta %g: MatMulNBits adds its bias as it is; leave out --bits and --block-size for a float base", l.Beta)
	}
	return nil
}

// writeLoftQBase puts LoftQ's base in place of l's weight: the dequantized
// matrix in the weight's initializer, or a MatMulNBits node in the node's
// place. It returns the layer as it now stands.
func writeLoftQBase(m *graph.Model, l Linear, st *loftqStart, o LoftQOptions) (Linear, error) {
	if !o.Pack {
		w := m.Initializer(l.Weight)
		in, out := int(l.In), int(l.Out)
		vals := make([]float32, in*out)
		for i := 0; i < in; i++ {
			for j := 0; j < out; j++ {
				v := float32(float64(st.deq[i*out+j]) / float64(l.Alpha))
				if l.WeightTransposed {
					vals[j*in+i] = v
				} else {
					vals[i*out+j] = v
				}
			}
		}
		if err := graph.SetFloat32s(w, vals); err != nil {
			return Linear{}, layerErr(l, "%w", err)
		}
		return l, nil
	}
	base := quant.BuilderNames(l.Weight, o.Bits)
	names := quant.TensorNames{B: m.UniqueName(base.B), Scales: m.UniqueName(base.Scales)}
	if !st.w.Symmetric() {
		names.ZeroPoints = m.UniqueName(base.ZeroPoints)
	}
	tensors, err := st.w.Tensors(names)
	if err != nil {
		return Linear{}, layerErr(l, "%w", err)
	}
	bias := ""
	if l.Op == "Gemm" {
		bias = l.Bias
	}
	name := ""
	if l.NodeName != "" {
		name = m.UniqueName(quant.BuilderNodeName(l.NodeName, o.Bits))
	}
	node, err := st.w.Node(names, quant.NodeOptions{Name: name, A: l.Input, Y: l.Output, Bias: bias})
	if err != nil {
		return Linear{}, layerErr(l, "%w", err)
	}
	for _, t := range tensors {
		m.AddInitializer(t)
	}
	nodes := m.Graph().Node
	i := slices.Index(nodes, l.Node)
	if i < 0 {
		return Linear{}, layerErr(l, "the layer's node is not in the graph")
	}
	nodes[i] = node
	m.Reindex()
	// The float weight and the Cast, Transpose and Identity nodes that led
	// to it go where nothing else reads them.
	read := func(v string) bool { return len(m.Consumers(v)) > 0 || m.IsGraphOutput(v) }
	for _, c := range slices.Backward(l.WeightChain) {
		if m.Producer(c.Output[0]) == c && !read(c.Output[0]) {
			m.RemoveNodes(c)
		}
	}
	if m.Initializer(l.Weight) != nil && !read(l.Weight) {
		m.RemoveInitializer(l.Weight)
	}
	if m.Opset(quant.Domain) == 0 {
		m.SetOpset(quant.Domain, 1)
	}
	nl, ok := nbitsLinearOf(m, node)
	if !ok {
		return Linear{}, layerErr(l, "the MatMulNBits layer written for it is not one peftonnx adapts")
	}
	nl.Module, nl.Kind, nl.Head = l.Module, l.Kind, l.Head
	return nl, nil
}

// loftqOptions returns o's LoftQ options, the defaults where none were
// given.
func (o options) loftqOptions() LoftQOptions {
	if o.loftq != nil {
		return *o.loftq
	}
	return LoftQOptions{}.withDefaults()
}

// planLoftQ runs LoftQ on layer l of site s.
func planLoftQ(m *graph.Model, l Linear, s Site, o LoftQOptions) (*loftqStart, error) {
	if err := checkLoftQ(m, l, o); err != nil {
		return nil, err
	}
	w, err := effectiveWeight(m, l)
	if err != nil {
		return nil, err
	}
	dt := dtype.Float32 // the scales of a float base need only be exact in float32
	if o.Pack {
		dt = l.DType
	}
	st, err := loftqFactors(w, int(l.In), int(l.Out), s.R, s.Scale, dt, o)
	if err != nil {
		return nil, layerErr(l, "init loftq: %w", err)
	}
	return st, nil
}
