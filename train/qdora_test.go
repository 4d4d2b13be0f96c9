package train

import (
	"math/rand/v2"
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
// The norm ‖W + s·A·B‖ reads the packed weight through a second
// MatMulNBits node (Aᵀ·W) and is detached, so the packed tensors stay as
// they are and get no gradient.

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
