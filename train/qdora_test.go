package train

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// QDoRA: DoRA on the int4 (MatMulNBits) layers, trained on ONNX Runtime.
// The norm ‖W + s·A·B‖ takes Aᵀ·W from the layer's own MatMulNBits node,
// which multiplies x's rows with Aᵀ's appended, and is detached, so the
// packed tensors stay as they are and get no gradient.

// int4Layer returns an int4 layer layer.proj of in × out, y = x·W + bias
// (zero points; its node /layer/proj/MatMul_Q4 reads x), weights and bias
// from randoms.
func int4Layer(t *testing.T, in, out int, randoms func(int, float64) []float64) ([]*onnxpb.TensorProto, *onnxpb.NodeProto) {
	t.Helper()
	w, err := quant.Quantize(f32s(randoms(in*out, 0.3)), in, out, quant.Options{Bits: 4, BlockSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	names := quant.BuilderNames("layer.proj.MatMul.weight", 4)
	ts, err := w.Tensors(names)
	if err != nil {
		t.Fatal(err)
	}
	node, err := w.Node(names, quant.NodeOptions{Name: "/layer/proj/MatMul_Q4", A: "x", Y: "y", Bias: "layer.proj.bias"})
	if err != nil {
		t.Fatal(err)
	}
	return append(ts, graph.NewFloatTensor("layer.proj.bias", dtype.Float32, []int64{int64(out)}, randoms(out, 0.1))), node
}

// TestQDoRATrains trains DoRA on every int4 layer of the model builder's
// LLaMA for 30 steps: every site is on a MatMulNBits layer, the loss
// falls, and the packed weights, scales and zero points come out bit for
// bit.
func TestQDoRATrains(t *testing.T) {
	requireORT(t)
	m := int4Llama(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha, lc.UseDoRA = 4, 8, true
	trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 2e-2, func(a *graph.Model) (Summaryish, error) {
		sites, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		for _, s := range sites {
			if s.Op != rewrite.OpMatMulNBits || s.Magnitude == "" {
				t.Errorf("site %s is a %s layer, magnitude %q: want DoRA on an int4 layer", s.Module, s.Op, s.Magnitude)
			}
		}
		if len(sites) != 2*5+1 {
			t.Errorf("%d sites, want 11", len(sites))
		}
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	})
}

// TestQDoRAGradientsMatchFloat holds the DoRA gradients through the int4
// layers, whose norms come from ‖W‖² and Aᵀ·W, to those through their
// float twin (each MatMulNBits a MatMul of its weight dequantized in Go),
// whose norms come from W + s·A·B itself; and to themselves with whole
// layers recomputed.
func TestQDoRAGradientsMatchFloat(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha, lc.UseDoRA = 4, 8, true
	grads := func(float bool, build ...autodiff.Option) (map[string][]float64, []string) {
		m := int4Llama(t)
		if float {
			dequantizeAll(t, m)
		}
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		params := sum.Trainable()
		fillAdapter(t, m, params)
		detached, err := rewrite.DetachedValues(m)
		if err != nil {
			t.Fatal(err)
		}
		autodiff.MarkStopGradient(m, detached...)
		return gradientsOnBuilt(t, m, CausalLM, params, nil, build), params
	}
	q, params := grads(false)
	f, _ := grads(true)
	compareGradients(t, q, f, params, 1e-4)
	// Whole layers recomputed in the backward pass, the norms' Aᵀ·W
	// included where they are made again: the same gradients.
	r, _ := grads(false, autodiff.WithRecomputeLayers(true))
	compareGradients(t, r, q, params, 1e-5)
}

// TestQDQDoRAGradients holds the gradients of DoRA on a QDQ int8 layer,
// whose norm reads the DequantizeLinear's float output, to central finite
// differences, the norm detached and not.
func TestQDQDoRAGradients(t *testing.T) {
	requireORT(t)
	const in, out, rows = 5, 4, 3
	rng := rand.New(rand.NewPCG(7, 1))
	randoms := func(n int, scale float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(float32(rng.NormFloat64() * scale))
		}
		return v
	}
	wq := make([]byte, in*out)
	for i := range wq {
		wq[i] = byte(int8(rng.IntN(255) - 127))
	}
	inits := []*onnxpb.TensorProto{
		{Name: "layer.proj.weight_quantized", DataType: int32(dtype.Int8), Dims: []int64{in, out}, RawData: wq},
		graph.NewFloat32Tensor("layer.proj.weight_scale", dtype.Float32, nil, []float32{0.01}),
		{Name: "layer.proj.weight_zero_point", DataType: int32(dtype.Int8), RawData: []byte{0}},
	}
	dq := &onnxpb.NodeProto{OpType: "DequantizeLinear", Name: "/layer/proj/DequantizeLinear", Input: []string{"layer.proj.weight_quantized", "layer.proj.weight_scale", "layer.proj.weight_zero_point"}, Output: []string{"w"}}
	mm := &onnxpb.NodeProto{OpType: "MatMul", Name: "/layer/proj/MatMul", Input: []string{"x", "w"}, Output: []string{"y"}}
	x, err := rt.NewFloat32([]int64{rows, in}, f32s(randoms(rows*in, 1)))
	if err != nil {
		t.Fatal(err)
	}
	checkDoRAGradients(t, inits, mm, graph.TensorInfo("x", dtype.Float32, []int64{rows, in}), x, []int64{rows, out}, randoms, dq)
}

// TestQDoRAInputGradient holds the gradient that the input x [2, 3, 40]
// of an int4 DoRA layer (zero points, a bias, K = 40 padding its last
// block) gets through the layer's own MatMulNBits node, which multiplies
// x's rows with Aᵀ's appended, to DoRA's in float64 on the weight
// dequantized in Go: with the norm n held, y = (m/n)⊙(x·V) + bias, so
// d loss/dx = (d loss/dy ⊙ m/n)·Vᵀ; and to central finite differences
// (the norm does not depend on x); and the magnitude's, Σ d loss/dy ⊙
// x·V/n, to float64. The norm detached, free, and with the
// products recomputed in the backward pass (the layer's output made again
// through its rows, not kept): the same gradient.
func TestQDoRAInputGradient(t *testing.T) {
	requireORT(t)
	const in, out, r = 40, 6, 2
	xShape := []int64{2, 3, in}
	rows := int(graph.NumElements(xShape)) / in
	rng := rand.New(rand.NewPCG(9, 2))
	randoms := func(n int, scale float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(float32(rng.NormFloat64() * scale))
		}
		return v
	}
	inits, layer := int4Layer(t, in, out, randoms)
	yShape := []int64{2, 3, out}
	target := randoms(rows*out, 1)
	g := &onnxpb.GraphProto{Name: "qdora_input", Initializer: append(inits, graph.NewFloatTensor("target", dtype.Float32, yShape, target))}
	g.Input = []*onnxpb.ValueInfoProto{graph.TensorInfo("x", dtype.Float32, xShape)}
	g.Node = []*onnxpb.NodeProto{layer,
		{OpType: "Tanh", Name: "/tanh", Input: []string{"y"}, Output: []string{"h"}},
		{OpType: "Mul", Name: "/mul", Input: []string{"h", "target"}, Output: []string{"p"}},
		{OpType: "ReduceSum", Name: "/sum", Input: []string{"p"}, Output: []string{"loss"}, Attribute: []*onnxpb.AttributeProto{graph.AttrInt("keepdims", 0)}},
	}
	g.Output = []*onnxpb.ValueInfoProto{graph.TensorInfo("loss", dtype.Float32, nil)}
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}, Graph: g}, "")
	m.SetOpset(quant.Domain, 1)
	wq, err := quant.ReadNode(m, layer)
	if err != nil {
		t.Fatal(err)
	}
	wf, err := wq.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	cfg := adapter.DefaultLoRAConfig("layer.proj")
	cfg.R, cfg.Alpha, cfg.UseDoRA = r, 3, true
	sites, _, err := rewrite.InjectLoRA(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := sites[0]
	vals := map[string][]float64{}
	for _, name := range []string{s.A, s.B, s.Magnitude} {
		dims := m.Initializer(name).Dims
		vals[name] = randoms(int(graph.NumElements(dims)), 0.5)
		if name == s.Magnitude {
			for j, v := range vals[name] {
				vals[name][j] = 1 + 2*math.Abs(v)
			}
		}
		m.RemoveInitializer(name)
		m.AddInitializer(graph.NewFloatTensor(name, dtype.Float32, dims, vals[name]))
	}
	x := randoms(rows*in, 1)
	xt := mustTensor(t)(rt.NewFloat32(xShape, f32s(x)))

	// DoRA in float64: V = W + s·A·B, n = ‖V[:, j]‖, y = (m/n)⊙(x·V) + bias.
	a, bm, mag := vals[s.A], vals[s.B], vals[s.Magnitude]
	bias, err := m.Float32s(m.Initializer("layer.proj.bias"))
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float64, in*out)
	norm := make([]float64, out)
	for i := range in {
		for j := range out {
			v[i*out+j] = float64(wf[i*out+j])
			for k := range r {
				v[i*out+j] += s.Scale * a[i*r+k] * bm[k*out+j]
			}
			norm[j] += v[i*out+j] * v[i*out+j]
		}
	}
	want := make([]float64, rows*in)
	wantMag := make([]float64, out)
	for n := range rows {
		for j := range out {
			xv := 0.0
			for i := range in {
				xv += x[n*in+i] * v[i*out+j]
			}
			c := mag[j] / math.Sqrt(norm[j])
			y := c*xv + float64(bias[j])
			dy := (1 - math.Tanh(y)*math.Tanh(y)) * target[n*out+j]
			wantMag[j] += dy * xv / math.Sqrt(norm[j])
			for i := range in {
				want[n*in+i] += dy * c * v[i*out+j]
			}
		}
	}

	fwd, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ses, err := rt.NewSessionFromBytes(fwd, rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer ses.Close()
	lossAt := func(x []float64) float64 {
		res, err := ses.Run(map[string]*rt.Tensor{"x": mustTensor(t)(rt.NewFloat32(xShape, f32s(x)))}, []string{"loss"})
		if err != nil {
			t.Fatal(err)
		}
		return res["loss"].ToFloat64()[0]
	}
	const h = 1e-3
	fd := make([]float64, len(x))
	for i := range x {
		p := slices.Clone(x)
		p[i] += h
		up := lossAt(p)
		p[i] -= 2 * h
		fd[i] = (up - lossAt(p)) / (2 * h)
	}
	detached, err := rewrite.DetachedValues(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		detach bool
		opts   []autodiff.Option
	}{{"detached", true, nil}, {"free", false, nil}, {"detached, products recomputed", true, []autodiff.Option{autodiff.WithRecomputeProducts(true)}}} {
		dm := m.Clone()
		if c.detach {
			autodiff.MarkStopGradient(dm, detached...)
		}
		gm, err := autodiff.Build(dm, "loss", []string{"x", s.Magnitude}, c.opts...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.opts != nil {
			// The layer's output, which the magnitude's gradient reads, is
			// made again through the weight's slabs (a Gemm), from x's
			// rows with Aᵀ's appended, split and reshaped as in the
			// forward pass, not kept from it.
			made := 0
			for _, n := range gm.Graph().Node {
				if strings.HasPrefix(n.Name, "recompute/") && n.OpType == "Gemm" {
					made++
				}
			}
			if made != 1 {
				t.Errorf("%s: %d products recomputed, want the int4 layer's", c.name, made)
			}
		}
		feeds := map[string]*rt.Tensor{"x": xt, s.Magnitude: mustTensor(t)(rt.NewFloat32([]int64{out}, f32s(mag)))}
		res := runModel(t, gm, feeds, autodiff.GradName("x"), autodiff.GradName(s.Magnitude))
		got := res[autodiff.GradName("x")].ToFloat64()
		for j, g := range res[autodiff.GradName(s.Magnitude)].ToFloat64() {
			if d := math.Abs(g - wantMag[j]); !(d <= 1e-5*math.Max(1, math.Abs(wantMag[j]))) {
				t.Errorf("%s: d loss/dm[%d] = %.9g; DoRA in float64 gives %.9g", c.name, j, g, wantMag[j])
			}
		}
		worst := 0.0
		for i := range want {
			scale := math.Max(1, math.Abs(want[i]))
			if d := math.Abs(got[i]-want[i]) / scale; !(d <= 1e-5) {
				t.Fatalf("%s: d loss/dx[%d] = %.9g; DoRA in float64 gives %.9g", c.name, i, got[i], want[i])
			} else {
				worst = max(worst, d)
			}
			if d := math.Abs(got[i] - fd[i]); !(d <= 2e-3*scale) {
				t.Fatalf("%s: d loss/dx[%d] = %.9g; finite differences %.9g", c.name, i, got[i], fd[i])
			}
		}
		t.Logf("%s: %d entries of d loss/dx, largest difference from float64 %.3g", c.name, len(want), worst)
	}
}
