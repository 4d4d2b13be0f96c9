package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// TestLoRAMLP checks a two-layer MLP whose first layer carries a LoRA
// branch, y = x·W + (x·A·B)·s, trained with a cross entropy, where only A
// and B are parameters: the weights stay frozen initializers, A and B start
// as initializers and become inputs.
func TestLoRAMLP(t *testing.T) {
	requireORT(t)
	for _, form := range []string{"SoftmaxCrossEntropyLoss", "LogSoftmax+GatherElements"} {
		t.Run(form, func(t *testing.T) {
			opset := int64(13)
			if form != "SoftmaxCrossEntropyLoss" {
				opset = 11
			}
			g := newTestGraph(t, opset, dtype.Float64, declSymbolic)
			x := g.input("x", i64s(4, 6), nil)
			w1 := g.randFloats(i64s(6, 8), nil)
			b1 := g.randFloats(i64s(8), nil)
			w2 := g.randFloats(i64s(8, 5), nil)
			b2 := g.randFloats(i64s(5), nil)
			// A and B are initializers that Build turns into inputs; the test
			// feeds the same values.
			a := g.param("lora_A", i64s(6, 2), nil)
			bm := g.param("lora_B", i64s(2, 8), nil)
			for _, p := range []string{a, bm} {
				f := g.feeds[p]
				g.m.AddInitializer(graph.NewFloatTensor(p, g.dt, f.dims, f.f))
			}
			g.m.Proto.Graph.Input = g.m.Proto.Graph.Input[:1]
			g.m.Reindex()

			base := g.node("MatMul", []string{x, w1})
			lora := g.node("Mul", []string{g.node("MatMul", []string{g.node("MatMul", []string{x, a}), bm}), g.floats(nil, 2)})
			h := g.node("Add", []string{g.node("Add", []string{base, lora}), b1})
			h = g.node("Tanh", []string{h})
			logits := g.node("Add", []string{g.node("MatMul", []string{h, w2}), b2})
			labels := g.intInput("labels", i64s(4), i64s(0, 4, 2, 4))
			var loss string
			if form == "SoftmaxCrossEntropyLoss" {
				loss = g.node("SoftmaxCrossEntropyLoss", []string{logits, labels})
			} else {
				logp := g.node("LogSoftmax", []string{logits}, graph.AttrInt("axis", 1))
				picked := g.node("GatherElements", []string{logp, g.node("Unsqueeze", []string{labels}, graph.AttrInts("axes", 1))}, graph.AttrInt("axis", 1))
				loss = g.node("Neg", []string{g.node("ReduceMean", []string{picked}, graph.AttrInt("keepdims", 0))})
			}
			tm := g.checkLoss(loss)

			for _, w := range []string{w1, b1, w2, b2} {
				if tm.Initializer(w) == nil {
					t.Errorf("frozen weight %q is no longer an initializer", w)
				}
			}
			for _, p := range []string{a, bm} {
				if tm.Initializer(p) != nil || tm.Input(p) == nil {
					t.Errorf("parameter %q is not a graph input without default", p)
				}
			}
			var outs []string
			for _, o := range tm.Graph().Output {
				outs = append(outs, o.Name)
			}
			if want := []string{loss, "grad.lora_A", "grad.lora_B"}; len(outs) != 3 || outs[0] != want[0] || outs[1] != want[1] || outs[2] != want[2] {
				t.Errorf("outputs: got %v want %v", outs, want)
			}
			// No gradient flows to x, W1 or the first MatMul: x·W1 is
			// forward only.
			for _, n := range tm.Graph().Node {
				for _, in := range n.Input {
					if in == w1 && n.OpType != "MatMul" {
						t.Errorf("W1 is read by %s %q: its gradient is being computed", n.OpType, n.Name)
					}
				}
			}
		})
	}
}
