package rewrite

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/half"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quant"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// nbitsCase is one int4 (MatMulNBits) layer y = x·W (+ bias) to put DoRA
// on: x [2, 3, k].
type nbitsCase struct {
	name     string
	k, n, r  int
	q        quant.Options
	bias     bool
	accuracy int
	elem     dtype.Type // the activation's and the scales' type
	adt      dtype.Type // the LoRA dtype; Undefined: the layer's
	tol      float64
}

var nbitsCases = []nbitsCase{
	// K = 40 pads the last block of 16.
	{name: "symmetric", k: 40, n: 12, r: 3, q: quant.Options{Bits: 4, BlockSize: 16, Symmetric: true}, elem: dtype.Float32, tol: 2e-5},
	{name: "zero-points-bias", k: 32, n: 10, r: 2, q: quant.Options{Bits: 4, BlockSize: 16}, bias: true, elem: dtype.Float32, tol: 2e-5},
	{name: "2-bit", k: 64, n: 8, r: 4, q: quant.Options{Bits: 2, BlockSize: 32}, elem: dtype.Float32, tol: 2e-5},
	{name: "8-bit-accuracy-1", k: 32, n: 6, r: 2, q: quant.Options{Bits: 8, BlockSize: 32, Symmetric: true}, accuracy: 1, elem: dtype.Float32, tol: 2e-5},
	// accuracy_level 4 has ONNX Runtime quantize the layer's input (and
	// the norm's Aᵀ) to int8 in blocks.
	{name: "accuracy-4", k: 64, n: 8, r: 2, q: quant.Options{Bits: 4, BlockSize: 32}, accuracy: 4, elem: dtype.Float32, tol: 2e-2},
	{name: "float16", k: 32, n: 8, r: 2, q: quant.Options{Bits: 4, BlockSize: 16, ScaleType: dtype.Float16}, elem: dtype.Float16, tol: 2e-2},
	{name: "float16-float32-branch", k: 32, n: 8, r: 2, q: quant.Options{Bits: 4, BlockSize: 16, ScaleType: dtype.Float16}, bias: true, elem: dtype.Float16, adt: dtype.Float32, tol: 2e-2},
}

// nbitsLayer is an int4 layer's model and what a test needs of it: the
// weight dequantized in Go (package quant, checked against ONNX Runtime's
// kernel there) [k, n], the bias, the input x and its feed.
type nbitsLayer struct {
	m       *graph.Model
	w, bias []float64
	x       []float64
	feeds   map[string]*rt.Tensor
}

// newNbitsLayer builds tc's layer from random weights, as the model builder
// names it: node /layer/proj/MatMul_Q4, module layer.proj.
func newNbitsLayer(t *testing.T, tc nbitsCase, rng *rand.Rand) nbitsLayer {
	t.Helper()
	vals := make([]float32, tc.k*tc.n)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64() / math.Sqrt(float64(tc.k)))
	}
	wq, err := quant.Quantize(vals, tc.k, tc.n, tc.q)
	if err != nil {
		t.Fatal(err)
	}
	deq, err := wq.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	l := nbitsLayer{w: make([]float64, len(deq))}
	for i, v := range deq {
		l.w[i] = float64(v)
	}
	names := quant.BuilderNames("layer.proj.MatMul.weight", wq.Bits)
	ts, err := wq.Tensors(names)
	if err != nil {
		t.Fatal(err)
	}
	g := &onnxpb.GraphProto{Name: "int4_layer", Initializer: ts}
	o := quant.NodeOptions{Name: quant.BuilderNodeName("/layer/proj/MatMul", wq.Bits), A: "x", Y: "y", AccuracyLevel: tc.accuracy}
	if tc.bias {
		o.Bias = "layer.proj.bias"
		b := make([]float32, tc.n)
		for j := range b {
			b[j] = roundTo(tc.elem, float32(rng.NormFloat64()*0.1))
			l.bias = append(l.bias, float64(b[j]))
		}
		g.Initializer = append(g.Initializer, graph.NewFloat32Tensor(o.Bias, tc.elem, []int64{int64(tc.n)}, b))
	}
	node, err := wq.Node(names, o)
	if err != nil {
		t.Fatal(err)
	}
	g.Node = []*onnxpb.NodeProto{node}
	shape := []int64{2, 3, int64(tc.k)}
	g.Input = []*onnxpb.ValueInfoProto{graph.TensorInfo("x", tc.elem, shape)}
	g.Output = []*onnxpb.ValueInfoProto{graph.TensorInfo("y", tc.elem, []int64{2, 3, int64(tc.n)})}
	l.m = graph.New(&onnxpb.ModelProto{IrVersion: 8, Graph: g}, "")
	l.m.SetOpset("", 17)
	l.m.SetOpset(quant.Domain, 1)

	x := make([]float32, graph.NumElements(shape))
	for i := range x {
		x[i] = roundTo(tc.elem, float32(rng.NormFloat64()))
		l.x = append(l.x, float64(x[i]))
	}
	xt := mustTensor(t)(rt.NewFloat32(shape, x))
	if tc.elem == dtype.Float16 {
		xt = mustTensor(t)(rt.NewFloat16FromFloat32(shape, x))
	}
	l.feeds = map[string]*rt.Tensor{"x": xt}
	return l
}

// mustTensor returns a function that fails t on a non-nil error.
func mustTensor(t *testing.T) func(*rt.Tensor, error) *rt.Tensor {
	return func(v *rt.Tensor, err error) *rt.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// roundTo rounds v to dt where dt is float16.
func roundTo(dt dtype.Type, v float32) float32 {
	if dt == dtype.Float16 {
		return half.Float16ToFloat32(half.Float32ToFloat16(v))
	}
	return v
}

// doraExpect computes DoRA's layer in float64 from the definition, for
// W [in, out], A [in, r], B [r, out], scaling s and magnitude m: V = W +
// s·A·B, its column norms ‖V[:, j]‖, and the merged weight W'[:, j] =
// m[j]·V[:, j]/‖V[:, j]‖.
func doraExpect(w, a, b []float64, in, out, r int, s float64, mag []float64) (norms, merged []float64) {
	v := slices.Clone(w)
	for i := 0; i < in; i++ {
		for j := 0; j < out; j++ {
			for k := 0; k < r; k++ {
				v[i*out+j] += s * a[i*r+k] * b[k*out+j]
			}
		}
	}
	norms = make([]float64, out)
	for k, vk := range v {
		norms[k%out] += vk * vk
	}
	for j := range norms {
		norms[j] = math.Sqrt(norms[j])
	}
	if mag == nil {
		return norms, nil
	}
	for k := range v {
		v[k] *= mag[k%out] / norms[k%out]
	}
	return norms, v
}

// linearOut returns x·W + bias in float64 for x [rows, in] and W [in,
// out]; bias may be nil.
func linearOut(x, w []float64, in, out int, bias []float64) []float64 {
	rows := len(x) / in
	y := make([]float64, rows*out)
	for n := 0; n < rows; n++ {
		for j := 0; j < out; j++ {
			acc := 0.0
			for i := 0; i < in; i++ {
				acc += x[n*in+i] * w[i*out+j]
			}
			if bias != nil {
				acc += bias[j]
			}
			y[n*out+j] = acc
		}
	}
	return y
}

// f64s converts v to float64.
func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// nbitsDoRAAdapter returns a DoRA adapter of tc's layer with random A, B
// and magnitude in the adapter's type.
func nbitsDoRAAdapter(tc nbitsCase, rng *rand.Rand) *adapter.Adapter {
	cfg := config(tc.r, float64(2*tc.r), "layer.proj")
	cfg.UseDoRA, cfg.DType = true, tc.adt
	dt := tc.adt.Or(tc.elem)
	draw := func(n int, scale, offset float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = roundTo(dt, float32(offset+rng.NormFloat64()*scale))
		}
		return v
	}
	ad := adapter.NewLoRA(cfg)
	ad.Weights["layer.proj"] = adapter.LoRAWeights{
		A:         adapter.NewTensor([]int64{int64(tc.k), int64(tc.r)}, draw(tc.k*tc.r, 1/math.Sqrt(float64(tc.k)), 0)),
		B:         adapter.NewTensor([]int64{int64(tc.r), int64(tc.n)}, draw(tc.r*tc.n, 0.3, 0)),
		Magnitude: adapter.NewTensor([]int64{int64(tc.n)}, draw(tc.n, 0.2, 1)),
	}
	return ad
}

// TestDoRAInt4Math puts DoRA on one int4 layer in each layout: a fresh
// injection computes the base, with the magnitude at the dequantized
// weight's column norms, the packed tensors unchanged and no float copy
// of the weight in the model; an adapter's norm and output match DoRA's
// formula in float64 on the weight dequantized in Go; the dequantized
// merge and MergeAdapter give the same with a float MatMul and no packed
// tensor left, and unmerge back; the requantized merge keeps the base's
// nodes, computes its rounded weight and reports the rounding against
// m·V/‖V‖; unmerging it is refused.
func TestDoRAInt4Math(t *testing.T) {
	for i, tc := range nbitsCases {
		t.Run(tc.name, func(t *testing.T) {
			rng := newRand(uint64(40 + i))
			l := newNbitsLayer(t, tc, rng)
			base := l.m
			yOf := func(m *graph.Model) []float64 { return run(t, session(t, m), l.feeds)["y"].ToFloat64() }
			check := func(what string, got, want []float64, tol float64) {
				t.Helper()
				for j := range want {
					if d := math.Abs(got[j]-want[j]) / math.Max(1, math.Abs(want[j])); !(d <= tol) {
						t.Fatalf("%s: [%d] = %v, want %v (tolerance %g)", what, j, got[j], want[j], tol)
					}
				}
			}
			baseOut := yOf(base)
			packed := initBytes(t, base)

			cfg := config(tc.r, float64(2*tc.r), "layer.proj")
			cfg.UseDoRA, cfg.DType = true, tc.adt
			fresh := base.Clone()
			sites, _, err := InjectLoRA(fresh, cfg, WithSeed(2))
			if err != nil {
				t.Fatal(err)
			}
			s := sites[0]
			check("fresh", yOf(fresh), baseOut, tc.tol)
			wantNorms, _ := doraExpect(l.w, nil, nil, tc.k, tc.n, 0, 0, nil)
			mag, err := fresh.Float32s(fresh.Initializer(s.Magnitude))
			if err != nil {
				t.Fatal(err)
			}
			check("fresh magnitude", f64s(mag), wantNorms, 1e-6)
			nbits := 0
			for _, n := range fresh.Graph().Node {
				if quant.IsNode(n) {
					nbits++
					if n.Input[quant.InputB] != "layer.proj.MatMul.weight_Q"+strconv.Itoa(tc.q.Bits) {
						t.Errorf("MatMulNBits %s reads %s", n.Name, n.Input[quant.InputB])
					}
				}
			}
			if nbits != 1 {
				t.Errorf("%d MatMulNBits nodes, want the layer alone: it computes the norm's Aᵀ·W too", nbits)
			}
			for _, ti := range fresh.Graph().Initializer {
				if graph.TypeOf(ti).IsFloat() && graph.NumElements(ti.Dims) >= int64(tc.k*tc.n) {
					t.Errorf("initializer %s %v: a float copy of the weight", ti.Name, ti.Dims)
				}
				if want, ok := packed[ti.Name]; ok && !bytes.Equal(tensorBytes(t, fresh, ti), want) {
					t.Errorf("injection changed %s", ti.Name)
				}
			}

			ad := nbitsDoRAAdapter(tc, rng)
			w := ad.Weights["layer.proj"]
			norms, exact := doraExpect(l.w, f64s(w.A.Data), f64s(w.B.Data), tc.k, tc.n, tc.r, cfg.ScalingFor("layer.proj"), f64s(w.Magnitude.Data))
			want := linearOut(l.x, exact, tc.k, tc.n, l.bias)
			adapted := base.Clone()
			sites, _, err = ApplyLoRA(adapted, ad)
			if err != nil {
				t.Fatal(err)
			}
			got := run(t, session(t, withNormOutput(adapted, sites[0].DoRANorm, sites[0].DType)), l.feeds)
			check("norm", got[sites[0].DoRANorm].ToFloat64(), norms, tc.tol)
			check("adapted", got["y"].ToFloat64(), want, tc.tol)

			float := adapted.Clone()
			if err := Merge(adapted.Clone()); err == nil || !strings.Contains(err.Error(), "MatMulNBits") {
				t.Errorf("merge into int4 without Dequantize or Requantize: %v", err)
			}
			if err := Merge(float, Dequantize()); err != nil {
				t.Fatal(err)
			}
			direct := base.Clone()
			if _, err := MergeAdapterWith(direct, ad, Dequantize()); err != nil {
				t.Fatal(err)
			}
			for what, m := range map[string]*graph.Model{"merged, dequantized": float, "MergeAdapter, dequantized": direct} {
				check(what, yOf(m), want, tc.tol)
				for _, n := range m.Graph().Node {
					if quant.IsNode(n) {
						t.Errorf("%s: node %s is still MatMulNBits", what, n.Name)
					}
				}
				for _, ti := range m.Graph().Initializer {
					if _, ok := packed[ti.Name]; ok && ti.Name != "layer.proj.bias" {
						t.Errorf("%s: %s is left behind", what, ti.Name)
					}
				}
				if rec, err := readDoRARecord(m); err != nil || len(rec.Merges) != 1 || len(rec.Merges[0].Norm) != tc.n {
					t.Fatalf("%s: DoRA record %+v, %v", what, rec, err)
				}
				un := m.Clone()
				if _, _, err := Unmerge(un, ad); err != nil {
					t.Fatalf("%s: unmerge: %v", what, err)
				}
				check(what+", unmerged", yOf(un), want, tc.tol)
			}

			rq := adapted.Clone()
			rep, err := MergeWith(rq, Requantize())
			if err != nil {
				t.Fatal(err)
			}
			gotNodes, gotInits := names(rq)
			wantNodes, wantInits := names(base)
			if !slices.Equal(gotNodes, wantNodes) || !slices.Equal(gotInits, wantInits) {
				t.Errorf("requantized merge: nodes %v, initializers %v; the base has %v, %v", gotNodes, gotInits, wantNodes, wantInits)
			}
			if rec, err := readDoRARecord(rq); err != nil || len(rec.Merges) != 0 {
				t.Errorf("requantized merge keeps DoRA norms %+v, %v: it cannot be unmerged", rec, err)
			}
			wq, err := quant.ReadNode(rq, rq.Graph().Node[0])
			if err != nil {
				t.Fatal(err)
			}
			deq, err := wq.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			var errSq, refSq, updSq float64
			for k, v := range deq {
				d := float64(v) - exact[k]
				errSq, refSq, updSq = errSq+d*d, refSq+exact[k]*exact[k], updSq+(exact[k]-l.w[k])*(exact[k]-l.w[k])
			}
			if len(rep) != 1 || !rep[0].Requantized {
				t.Fatalf("requantized merge reports %+v", rep)
			}
			if d := math.Abs(rep[0].RelError - math.Sqrt(errSq/refSq)); d > 1e-3*rep[0].RelError || rep[0].RelError == 0 {
				t.Errorf("requantized merge reports error %g of the weight, want %g", rep[0].RelError, math.Sqrt(errSq/refSq))
			}
			if d := math.Abs(rep[0].UpdateRelError - math.Sqrt(errSq/updSq)); d > 1e-3*rep[0].UpdateRelError {
				t.Errorf("requantized merge reports error %g of the update, want %g", rep[0].UpdateRelError, math.Sqrt(errSq/updSq))
			}
			check("requantized", yOf(rq), linearOut(l.x, f64s(deq), tc.k, tc.n, l.bias), tc.tol)
			t.Logf("requantized: weight error %.3g of W', %.3g of the update", rep[0].RelError, rep[0].UpdateRelError)
			if _, _, err := Unmerge(rq.Clone(), ad); err == nil || !strings.Contains(err.Error(), "nothing merged into int4 can be taken out") {
				t.Errorf("unmerge of the requantized merge: %v", err)
			}
		})
	}
}

// withNormOutput returns a copy of m with the DoRA norm value, of type
// dt, as one more output.
func withNormOutput(m *graph.Model, norm string, dt dtype.Type) *graph.Model {
	c := m.Clone()
	c.AddOutput(graph.TensorInfo(norm, dt, nil))
	return c
}

// initBytes returns the bytes of each of m's initializers.
func initBytes(t *testing.T, m *graph.Model) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, ti := range m.Graph().Initializer {
		out[ti.Name] = slices.Clone(tensorBytes(t, m, ti))
	}
	return out
}

// tensorBytes returns ti's bytes.
func tensorBytes(t *testing.T, m *graph.Model, ti *onnxpb.TensorProto) []byte {
	t.Helper()
	b, err := m.TensorBytes(ti)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// scaleMagnitudes multiplies every DoRA magnitude of m by 1 + 0.2·N(0, 1)
// per output feature, so that the rescaling changes the outputs.
func scaleMagnitudes(t *testing.T, m *graph.Model, sites []Site, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	for _, s := range sites {
		init := m.Initializer(s.Magnitude)
		v, err := m.Float32s(init)
		if err != nil {
			t.Fatal(err)
		}
		for j := range v {
			v[j] *= float32(1 + 0.2*rng.NormFloat64())
		}
		if err := graph.SetFloat32s(init, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDoRAInt4Llama puts DoRA on every int4 layer of the model builder's
// LLaMA: the fresh model computes the base's logits; with B and the
// magnitudes set, the extracted adapter applied to the int4 base computes
// the adapted logits, the dequantized merge too, with no MatMulNBits node
// nor packed tensor left, and unmerges back; the requantized MergeAdapter
// keeps the base's nodes and initializers and reports each layer.
func TestDoRAInt4Llama(t *testing.T) {
	base, _ := int4Builder(t)
	adapted := base.Clone()
	cfg := config(4, 8, ".*_proj", "lm_head")
	cfg.UseDoRA = true
	sites, _, err := InjectLoRA(adapted, cfg, WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 15 {
		t.Fatalf("%d sites, want 15", len(sites))
	}
	ref := runModel(t, base, 2, 5, 0)
	if d, where := maxRelDiff(t, runModel(t, adapted, 2, 5, 0), ref); d > 1e-5 {
		t.Errorf("fresh DoRA changes %s by %g", where, d)
	}
	randomizeB(t, adapted, sites, 2, 0.05)
	scaleMagnitudes(t, adapted, sites, 3)
	want := runModel(t, adapted, 2, 5, 0)
	if effect, _ := maxRelDiff(t, want, ref); effect < 1e-3 {
		t.Fatalf("DoRA changes the logits by only %g", effect)
	}
	ad, err := ExtractAdapter(adapted)
	if err != nil {
		t.Fatal(err)
	}
	applied := base.Clone()
	if _, _, err := ApplyLoRA(applied, ad); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, applied, 2, 5, 0), want); d > 1e-6 {
		t.Errorf("applied DoRA adapter differs by %g at %s", d, where)
	}

	float := adapted.Clone()
	if err := Merge(float, Dequantize()); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, float, 2, 5, 0), want); d > 1e-4 {
		t.Errorf("dequantized merge differs from the adapted model by %g at %s", d, where)
	}
	for _, n := range float.Graph().Node {
		if quant.IsNode(n) {
			t.Errorf("node %q is still MatMulNBits after the dequantized merge", n.Name)
		}
	}
	for _, ti := range float.Graph().Initializer {
		if strings.HasSuffix(ti.Name, "_Q4") || strings.HasSuffix(ti.Name, "_scales") || strings.HasSuffix(ti.Name, "_zero_points") {
			t.Errorf("packed tensor %s is left behind", ti.Name)
		}
	}
	un := float.Clone()
	if _, _, err := Unmerge(un, ad); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, un, 2, 5, 0), want); d > 1e-4 {
		t.Errorf("unmerged model differs from the adapted one by %g at %s", d, where)
	}

	rq := base.Clone()
	rep, err := MergeAdapterWith(rq, ad, Requantize())
	if err != nil {
		t.Fatal(err)
	}
	gotNodes, gotInits := names(rq)
	wantNodes, wantInits := names(base)
	if !slices.Equal(gotNodes, wantNodes) || !slices.Equal(gotInits, wantInits) {
		t.Errorf("requantized merge: nodes or initializers differ from the base's")
	}
	if len(rep) != 15 {
		t.Fatalf("%d layers reported, want 15", len(rep))
	}
	for _, r := range rep {
		if !r.Requantized || !(r.RelError > 0 && r.RelError < 0.2) || !(r.UpdateRelError > 0) {
			t.Errorf("%s: %+v", r.Module, r)
		}
	}
	d, _ := maxRelDiff(t, runModel(t, rq, 2, 5, 0), want)
	t.Logf("requantized DoRA merge: q_proj weight error %.3g (%.3g of the update); logits differ from the adapted model's by %.3g", rep[0].RelError, rep[0].UpdateRelError, d)
}

// TestDoRAQDQ puts DoRA on a QDQ int8 linear layer, per tensor and per
// axis: the float weight is the DequantizeLinear's output. A fresh
// injection computes the base; the adapted layer matches DoRA's formula
// in float64 on dq(Wq) = (Wq − zero_point)·scale; a plain Merge refuses,
// Merge with Dequantize matches with a float weight and keeps ‖V‖, and
// Unmerge gives the adapted model back.
func TestDoRAQDQ(t *testing.T) {
	for _, perAxis := range []bool{false, true} {
		t.Run(map[bool]string{false: "per-tensor", true: "per-axis"}[perAxis], func(t *testing.T) {
			base, err := models.QDQLinear(perAxis, 3)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(7, 7))
			x := make([]float32, 3*8)
			for i := range x {
				x[i] = float32(rng.IntN(121)-60) / 32 // exact through the activation's QDQ
			}
			yOf := func(m *graph.Model) []float32 { return runXY(t, m, []int64{3, 8}, x) }
			baseOut := yOf(base)
			m := base.Clone()
			cfg := config(2, 4, "fc")
			cfg.UseDoRA = true
			sites, _, err := InjectLoRA(m, cfg, WithSeed(1))
			if err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(yOf(m), baseOut); d > 1e-5 {
				t.Fatalf("fresh DoRA changed y by %g", d)
			}
			randomizeB(t, m, sites, 2, 0.5)
			scaleMagnitudes(t, m, sites, 4)
			adapted := yOf(m)

			get := func(name string) []float64 {
				v, err := m.Float32s(m.Initializer(name))
				if err != nil {
					t.Fatal(err)
				}
				return f64s(v)
			}
			wq := tensorBytes(t, m, m.Initializer("fc.weight_quantized"))
			zp := tensorBytes(t, m, m.Initializer("fc.weight_zero_point"))
			scale := get("fc.weight_scale")
			w := make([]float64, 8*6)
			for i := 0; i < 8; i++ {
				for j := 0; j < 6; j++ {
					k := 0
					if perAxis {
						k = j
					}
					w[i*6+j] = float64(int8(wq[i*6+j])-int8(zp[k])) * scale[k]
				}
			}
			_, merged := doraExpect(w, get(sites[0].A), get(sites[0].B), 8, 6, 2, 2, get(sites[0].Magnitude))
			want := linearOut(f64s(x), merged, 8, 6, get("fc.bias"))
			if d := maxDiff(adapted, f32sOf(want)); d > 1e-5 {
				t.Errorf("adapted y differs from DoRA's formula by %g", d)
			}
			if d := maxDiff(adapted, baseOut); d < 1e-2 {
				t.Fatalf("DoRA changed y by only %g", d)
			}
			ad, err := ExtractAdapter(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := Merge(m.Clone()); err == nil || !strings.Contains(err.Error(), "cannot be exact in int8") {
				t.Errorf("Merge of a QDQ DoRA layer: %v, want a refusal", err)
			}
			if err := Merge(m, Dequantize()); err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(yOf(m), adapted); d > 1e-5 {
				t.Errorf("dequantized merge differs from the adapted model by %g", d)
			}
			if m.Initializer("fc.weight_quantized") != nil || len(m.Graph().Node) != len(base.Graph().Node)-1 {
				t.Errorf("dequantized merge: the int8 weight or its DequantizeLinear is still there")
			}
			if rec, err := readDoRARecord(m); err != nil || len(rec.Merges) != 1 {
				t.Fatalf("merged DoRA record %+v, %v", rec, err)
			}
			un := m.Clone()
			if _, _, err := Unmerge(un, ad); err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(yOf(un), adapted); d > 1e-5 {
				t.Errorf("unmerged model differs from the adapted one by %g", d)
			}
		})
	}
}

// f32sOf converts v to float32.
func f32sOf(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// TestDoRAQDQConv puts DoRA on a Conv1d whose weight [4, 3, 3] is int8
// behind DequantizeLinear, per output channel: a fresh injection computes
// the base, and a DoRA adapter applied to it computes what it does on the
// float twin (the weight dequantized in the test); merging is refused, as
// for LoRA on a QDQ convolution.
func TestDoRAQDQConv(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	wq := make([]byte, 4*3*3)
	w := make([]float32, len(wq))
	scales := []float32{0.01, 0.02, 0.015, 0.005}
	for i := range wq {
		q := int8(rng.IntN(255) - 127)
		wq[i], w[i] = byte(q), float32(float64(q)*float64(scales[i/9]))
	}
	bias := []float32{0.1, -0.2, 0.05, 0}
	build := func(qdq bool) *graph.Model {
		g := &onnxpb.GraphProto{Name: "qdq_conv", Initializer: []*onnxpb.TensorProto{graph.NewFloat32Tensor("layer.proj.bias", dtype.Float32, []int64{4}, bias)}}
		weight := "layer.proj.weight"
		if qdq {
			g.Initializer = append(g.Initializer,
				&onnxpb.TensorProto{Name: "layer.proj.weight_quantized", DataType: int32(dtype.Int8), Dims: []int64{4, 3, 3}, RawData: wq},
				graph.NewFloat32Tensor("layer.proj.weight_scale", dtype.Float32, []int64{4}, scales),
				&onnxpb.TensorProto{Name: "layer.proj.weight_zero_point", DataType: int32(dtype.Int8), Dims: []int64{4}, RawData: make([]byte, 4)})
			g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "DequantizeLinear", Name: "/layer/proj/DequantizeLinear", Input: []string{"layer.proj.weight_quantized", "layer.proj.weight_scale", "layer.proj.weight_zero_point"}, Output: []string{"w"}, Attribute: []*onnxpb.AttributeProto{graph.AttrInt("axis", 0)}})
			weight = "w"
		} else {
			g.Initializer = append(g.Initializer, graph.NewFloat32Tensor(weight, dtype.Float32, []int64{4, 3, 3}, w))
		}
		g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "Conv", Name: "/layer/proj/Conv", Input: []string{"x", weight, "layer.proj.bias"}, Output: []string{"y"}, Attribute: []*onnxpb.AttributeProto{graph.AttrInts("pads", 1, 1)}})
		g.Input = []*onnxpb.ValueInfoProto{graph.TensorInfo("x", dtype.Float32, []int64{1, 3, 6})}
		g.Output = []*onnxpb.ValueInfoProto{graph.TensorInfo("y", dtype.Float32, []int64{1, 4, 6})}
		m := graph.New(&onnxpb.ModelProto{IrVersion: 8, Graph: g}, "")
		m.SetOpset("", 13)
		return m
	}
	x := make([]float32, 18)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	yOf := func(m *graph.Model) []float32 { return runXY(t, m, []int64{1, 3, 6}, x) }
	base, twin := build(true), build(false)
	cfg := config(2, 4, "layer.proj")
	cfg.UseDoRA = true
	fresh := base.Clone()
	if _, _, err := InjectLoRA(fresh, cfg, WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(yOf(fresh), yOf(base)); d > 1e-5 {
		t.Errorf("fresh DoRA on the QDQ convolution changed y by %g", d)
	}
	adapted := twin.Clone()
	sites, _, err := InjectLoRA(adapted, cfg, WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(t, adapted, sites, 3, 0.5)
	scaleMagnitudes(t, adapted, sites, 5)
	ad, err := ExtractAdapter(adapted)
	if err != nil {
		t.Fatal(err)
	}
	applied := base.Clone()
	if _, _, err := ApplyLoRA(applied, ad); err != nil {
		t.Fatal(err)
	}
	want := yOf(adapted)
	if d := maxDiff(yOf(applied), want); d > 1e-5 {
		t.Errorf("DoRA on the QDQ convolution differs from its float twin by %g", d)
	}
	if d := maxDiff(want, yOf(twin)); d < 1e-2 {
		t.Fatalf("the adapter changes y by only %g", d)
	}
	if err := Merge(applied.Clone(), Dequantize()); err == nil || !strings.Contains(err.Error(), "dequantized convolution weight is not supported") {
		t.Errorf("merge of the QDQ convolution: %v, want a refusal", err)
	}
}

// TestDoRAInt4Rows checks how a DoRA branch rewires an int4 layer's node,
// which multiplies its input's rows with Aᵀ's appended, and that taking
// the branch out gives the node back as it was. The layer reads a float
// DoRA layer's output (its input is that layer's sum, which the merge
// routes back too) and writes the graph output. The node is the model's
// only MatMulNBits, reads a branch's Concat, and FindLinears still sees
// its activation; the fresh model computes the base; an adapter
// extracted from a trained one gives its outputs applied to the base;
// Merge with Requantize leaves nodes, graph inputs and outputs equal to
// the base's, proto for proto, and Merge with Dequantize leaves the
// float MatMul reading the layer's input as before. A record whose base
// input is a base value is refused.
func TestDoRAInt4Rows(t *testing.T) {
	tc := nbitsCases[1] // zero points and a bias
	rng := newRand(47)
	l := newNbitsLayer(t, tc, rng)
	base := l.m
	node := base.Graph().Node[0]
	node.Input[quant.InputA] = "h"
	up := make([]float32, tc.k*tc.k)
	for i := range up {
		up[i] = float32(rng.NormFloat64() / math.Sqrt(float64(tc.k)))
	}
	base.AddInitializer(graph.NewFloat32Tensor("layer.up.weight", tc.elem, []int64{int64(tc.k), int64(tc.k)}, up))
	g := base.Graph()
	g.Node = append([]*onnxpb.NodeProto{{OpType: "MatMul", Name: "/layer/up/MatMul", Input: []string{"x", "layer.up.weight"}, Output: []string{"h"}}}, g.Node...)
	base.Reindex()
	yOf := func(m *graph.Model) []float64 { return run(t, session(t, m), l.feeds)["y"].ToFloat64() }
	baseOut := yOf(base)
	_, baseInits := names(base)

	cfg := config(tc.r, float64(2*tc.r), "layer.up", "layer.proj")
	cfg.UseDoRA = true
	adapted := base.Clone()
	sites, _, err := InjectLoRA(adapted, cfg, WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 2 || sites[1].Module != "layer.proj" {
		t.Fatalf("sites %+v", sites)
	}
	s := sites[1]
	var nbits []*onnxpb.NodeProto
	for _, n := range adapted.Graph().Node {
		if quant.IsNode(n) {
			nbits = append(nbits, n)
		}
	}
	if len(nbits) != 1 || nbits[0].Input[quant.InputA] != s.BaseInput || adapted.Producer(s.BaseInput).OpType != "Concat" || !slices.Contains(s.Nodes, adapted.Producer(s.BaseInput).Name) {
		t.Fatalf("MatMulNBits nodes %v; the site's base input %q, input %q", nbits, s.BaseInput, s.Input)
	}
	if s.Input != sites[0].Sum || s.BaseOutput != nbits[0].Output[0] || s.Sum != "y" {
		t.Errorf("site input %q (want the float layer's sum %q), base output %q, sum %q", s.Input, sites[0].Sum, s.BaseOutput, s.Sum)
	}
	ls, err := FindLinears(adapted)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[1].Input != s.Input {
		t.Errorf("FindLinears on the adapted model: %+v; want layer.proj reading %q", ls, s.Input)
	}
	for j, v := range yOf(adapted) {
		if d := math.Abs(v - baseOut[j]); d > tc.tol*math.Max(1, math.Abs(baseOut[j])) {
			t.Fatalf("fresh: y[%d] = %v, the base computes %v", j, v, baseOut[j])
		}
	}

	randomizeB(t, adapted, sites, 4, 0.3)
	scaleMagnitudes(t, adapted, sites, 5)
	want := yOf(adapted)
	ad, err := ExtractAdapter(adapted)
	if err != nil {
		t.Fatal(err)
	}
	applied := base.Clone()
	if _, _, err := ApplyLoRA(applied, ad); err != nil {
		t.Fatal(err)
	}
	if got := yOf(applied); !slices.Equal(got, want) {
		t.Errorf("the extracted adapter applied to the base computes %v, the adapted model %v", got, want)
	}

	rq := adapted.Clone()
	if _, err := MergeWith(rq, Requantize()); err != nil {
		t.Fatal(err)
	}
	if len(rq.Graph().Node) != len(base.Graph().Node) {
		t.Fatalf("requantized merge: %d nodes, the base has %d", len(rq.Graph().Node), len(base.Graph().Node))
	}
	for i, n := range base.Graph().Node {
		if !proto.Equal(rq.Graph().Node[i], n) {
			t.Errorf("requantized merge: node %d is %v, the base's %v", i, rq.Graph().Node[i], n)
		}
	}
	for what, pair := range map[string][2][]*onnxpb.ValueInfoProto{"inputs": {rq.Graph().Input, base.Graph().Input}, "outputs": {rq.Graph().Output, base.Graph().Output}} {
		if !slices.EqualFunc(pair[0], pair[1], func(a, b *onnxpb.ValueInfoProto) bool { return proto.Equal(a, b) }) {
			t.Errorf("requantized merge: graph %s %v, the base's %v", what, pair[0], pair[1])
		}
	}
	if _, got := names(rq); !slices.Equal(got, baseInits) {
		t.Errorf("requantized merge: initializers %v, the base's %v", got, baseInits)
	}
	// A record that says the node reads a base value now is refused:
	// removing the branch would rewire the base.
	bad := adapted.Clone()
	rec, _, err := readRecord(bad)
	if err != nil {
		t.Fatal(err)
	}
	rec.Sites[1].BaseInput = "x"
	if err := writeRecord(bad, &rec); err != nil {
		t.Fatal(err)
	}
	if err := Merge(bad, Requantize()); err == nil || !strings.Contains(err.Error(), `what the base node reads, "x", is not the branch's`) {
		t.Errorf("merge with a record whose base input is a base value: %v", err)
	}
	fl := adapted.Clone()
	if err := Merge(fl, Dequantize()); err != nil {
		t.Fatal(err)
	}
	mm := fl.NodeByName("/layer/proj/MatMul")
	if mm == nil || mm.OpType != "MatMul" || mm.Input[0] != "h" {
		t.Fatalf("dequantized merge: node %v, want a MatMul reading h", mm)
	}
	got := yOf(fl)
	for j := range want {
		if d := math.Abs(got[j] - want[j]); d > tc.tol*math.Max(1, math.Abs(want[j])) {
			t.Fatalf("dequantized merge: y[%d] = %v, the adapted model %v", j, got[j], want[j])
		}
	}
}

// TestDoRAInt4OldOpsets puts a DoRA adapter on an int4 layer of a model
// at default-domain opsets 9 and 11, where Split takes no computed sizes
// and the rows are cut by Slice (with attributes before opset 10): the
// norm and the output match DoRA's formula in float64, the node reads a
// Concat, and the requantized merge gives the node back as it was.
func TestDoRAInt4OldOpsets(t *testing.T) {
	tc := nbitsCases[1] // zero points and a bias
	for _, opset := range []int64{9, 11} {
		t.Run("opset-"+strconv.FormatInt(opset, 10), func(t *testing.T) {
			rng := newRand(53)
			l := newNbitsLayer(t, tc, rng)
			l.m.SetOpset("", opset)
			ad := nbitsDoRAAdapter(tc, rng)
			w := ad.Weights["layer.proj"]
			norms, exact := doraExpect(l.w, f64s(w.A.Data), f64s(w.B.Data), tc.k, tc.n, tc.r, ad.LoRA.ScalingFor("layer.proj"), f64s(w.Magnitude.Data))
			want := linearOut(l.x, exact, tc.k, tc.n, l.bias)
			m := l.m.Clone()
			sites, _, err := ApplyLoRA(m, ad)
			if err != nil {
				t.Fatal(err)
			}
			s := sites[0]
			if p := m.Producer(s.BaseInput); p == nil || p.OpType != "Concat" {
				t.Fatalf("the node reads %q, not a Concat", s.BaseInput)
			}
			for _, n := range m.Graph().Node {
				if n.OpType == "Split" {
					t.Errorf("opset %d: node %s is a Split", opset, n.Name)
				}
			}
			got := run(t, session(t, withNormOutput(m, s.DoRANorm, s.DType)), l.feeds)
			for what, c := range map[string][2][]float64{"norm": {got[s.DoRANorm].ToFloat64(), norms}, "y": {got["y"].ToFloat64(), want}} {
				for j := range c[1] {
					if d := math.Abs(c[0][j]-c[1][j]) / math.Max(1, math.Abs(c[1][j])); !(d <= tc.tol) {
						t.Fatalf("%s[%d] = %v, want %v", what, j, c[0][j], c[1][j])
					}
				}
			}
			if _, err := MergeWith(m, Requantize()); err != nil {
				t.Fatal(err)
			}
			if len(m.Graph().Node) != 1 || !proto.Equal(m.Graph().Node[0], l.m.Graph().Node[0]) {
				t.Errorf("requantized merge: nodes %v, the base's %v", m.Graph().Node, l.m.Graph().Node)
			}
		})
	}
}
