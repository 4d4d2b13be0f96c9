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
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// QDoRA: DoRA on the int4 (MatMulNBits) layers, trained on ONNX Runtime.
// The norm ‖W + s·A·B‖ reads the packed weight through a second
// MatMulNBits node (Aᵀ·W) and is detached, so the packed tensors stay as
// they are and get no gradient.

// TestQDoRAGradients holds the gradients of DoRA on one int4 layer (zero
// points, a bias, K = 40 padding its last block of 16) to central finite
// differences, with the norm not detached (the gradient then crosses the
// norm's MatMulNBits too) and detached, as training runs.
func TestQDoRAGradients(t *testing.T) {
	requireORT(t)
	const in, out, rows = 40, 6, 3
	rng := rand.New(rand.NewPCG(6, 1))
	w, err := quant.Quantize(f32s(randomValues(rng, in*out, 0.3)), in, out, quant.Options{Bits: 4, BlockSize: 16})
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
	g := &onnxpb.GraphProto{Name: "qdora", Initializer: append(ts, graph.NewFloatTensor("layer.proj.bias", dtype.Float32, []int64{out}, randomValues(rng, out, 0.1))), Node: []*onnxpb.NodeProto{node}}
	checkDoRAGradients(t, g, in, out, rows, rng)
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
// whose norms come from W + s·A·B itself.
func TestQDoRAGradientsMatchFloat(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha, lc.UseDoRA = 4, 8, true
	grads := func(float bool) (map[string][]float64, []string) {
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
		return gradientsOn(t, m, CausalLM, params, nil), params
	}
	q, params := grads(false)
	f, _ := grads(true)
	compareGradients(t, q, f, params, 1e-4)
}

// TestQDQDoRAGradients holds the gradients of DoRA on a QDQ int8 layer,
// whose norm reads the DequantizeLinear's float output, to central finite
// differences, the norm detached and not.
func TestQDQDoRAGradients(t *testing.T) {
	requireORT(t)
	const in, out, rows = 5, 4, 3
	rng := rand.New(rand.NewPCG(7, 1))
	wq := make([]byte, in*out)
	for i := range wq {
		wq[i] = byte(int8(rng.IntN(255) - 127))
	}
	g := &onnxpb.GraphProto{Name: "qdq_dora", Initializer: []*onnxpb.TensorProto{
		{Name: "layer.proj.weight_quantized", DataType: int32(dtype.Int8), Dims: []int64{in, out}, RawData: wq},
		graph.NewFloat32Tensor("layer.proj.weight_scale", dtype.Float32, nil, []float32{0.01}),
		{Name: "layer.proj.weight_zero_point", DataType: int32(dtype.Int8), RawData: []byte{0}},
	}, Node: []*onnxpb.NodeProto{
		{OpType: "DequantizeLinear", Name: "/layer/proj/DequantizeLinear", Input: []string{"layer.proj.weight_quantized", "layer.proj.weight_scale", "layer.proj.weight_zero_point"}, Output: []string{"w"}},
		{OpType: "MatMul", Name: "/layer/proj/MatMul", Input: []string{"x", "w"}, Output: []string{"y"}},
	}}
	checkDoRAGradients(t, g, in, out, rows, rng)
}
