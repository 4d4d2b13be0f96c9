package train

import (
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
)

// QLoRA: LoRA on the int4 (MatMulNBits) layers of the model builder's
// LLaMA, trained on ONNX Runtime. The packed weights stay as they are;
// the gradient passes each int4 layer through a weight dequantized in the
// graph for that layer's backward step alone.

// qloraTargets reach every attention and MLP projection and the head.
var qloraTargets = []string{".*_proj", "lm_head"}

// TestQLoRATrains trains LoRA on every int4 layer for 30 steps: the loss
// falls and the packed weights, scales and zero points come out bit for
// bit.
func TestQLoRATrains(t *testing.T) {
	requireORT(t)
	m := int4Llama(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
	trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 2e-2, func(a *graph.Model) (Summaryish, error) {
		sites, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		for _, s := range sites {
			if s.Op != rewrite.OpMatMulNBits {
				t.Errorf("site %s is on a %s layer, not an int4 one", s.Module, s.Op)
			}
		}
		if len(sites) != 2*5+1 {
			t.Errorf("%d sites, want 11", len(sites))
		}
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	})
}

// TestQLoRAGradientsMatchFloat holds the LoRA gradients through the int4
// layers to those through their float twin: the same graph with each
// MatMulNBits a MatMul of its weight dequantized in Go (package quant,
// checked against ONNX Runtime's kernel there).
func TestQLoRAGradientsMatchFloat(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
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
		return gradientsOn(t, m, CausalLM, params, nil), params
	}
	q, params := grads(false)
	f, _ := grads(true)
	compareGradients(t, q, f, params, 1e-4)
}

// dequantizeAll turns every MatMulNBits node of m into a MatMul (plus Add
// for a bias) of the same name reading its dequantized float weight.
func dequantizeAll(t *testing.T, m *graph.Model) {
	t.Helper()
	var nodes []*onnxpb.NodeProto
	for _, n := range m.Graph().Node {
		if !quant.IsNode(n) {
			nodes = append(nodes, n)
			continue
		}
		w, err := quant.ReadNode(m, n)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := w.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		name := n.Input[quant.InputB] + "_dequantized"
		m.AddInitializer(graph.NewFloat32Tensor(name, w.ScaleType, []int64{int64(w.K), int64(w.N)}, vals))
		mm := &onnxpb.NodeProto{Name: n.Name, OpType: "MatMul", Input: []string{n.Input[quant.InputA], name}, Output: n.Output}
		if len(n.Input) > quant.InputBias && n.Input[quant.InputBias] != "" {
			mm.Output = []string{n.Output[0] + "_matmul"}
			nodes = append(nodes, mm, &onnxpb.NodeProto{Name: n.Name + "_bias", OpType: "Add", Input: []string{mm.Output[0], n.Input[quant.InputBias]}, Output: n.Output})
			continue
		}
		nodes = append(nodes, mm)
	}
	m.Graph().Node = nodes
	m.Reindex()
	for _, n := range m.Graph().Node {
		if quant.IsNode(n) {
			t.Fatalf("node %s is still MatMulNBits", n.Name)
		}
	}
}

// TestQLoRAOnGenAIExport quantizes the real model-builder export
// ../shared/models/tiny-llama-genai-fp16 (float16) to int4, as the model
// builder ships its int4 models, and trains LoRA on every int4 layer.
func TestQLoRAOnGenAIExport(t *testing.T) {
	requireORT(t)
	m := loadSharedModel(t, "tiny-llama-genai-fp16/model.onnx").Clone()
	rep, err := quantize.Model(m, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != 2*7+1 {
		t.Fatalf("%d layers quantized, want 15", len(rep.Layers))
	}
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
	trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 2e-2, func(a *graph.Model) (Summaryish, error) {
		_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	})
}
