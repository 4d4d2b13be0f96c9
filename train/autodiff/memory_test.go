package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// TestGradientKeepsLittle checks two properties of a LLaMA's training
// graph that keep its memory low (see "Memory" in the package doc):
//
//   - no backward node transposes a frozen weight: dY·Wᵀ is a Gemm with
//     transB, since ONNX Runtime would fold a Transpose of W into a second
//     copy of it;
//   - no forward activation is read by the backward pass only for its
//     shape (Shape or Size): the model's dims are named after its inputs',
//     so shapes come from the inputs.
func TestGradientKeepsLittle(t *testing.T) {
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	params := []string{"model.layers.0.self_attn.q_proj.weight"}
	loss := m.UniqueName("loss")
	m.NewNode("ReduceSum", "/loss", []string{"logits"}, []string{loss}, graph.AttrInt("keepdims", 0))
	m.AddOutput(graph.TensorInfo(loss, dtype.Float32, nil))
	forward := map[string]bool{}
	for _, n := range m.Graph().Node {
		for _, o := range n.Output {
			forward[o] = true
		}
	}
	g, err := Build(m, loss, params)
	if err != nil {
		t.Fatal(err)
	}
	readers := map[string][]string{} // forward value -> ops of its backward readers
	for _, n := range g.Graph().Node {
		if forward[n.Output[0]] {
			continue
		}
		for _, in := range n.Input {
			if forward[in] {
				readers[in] = append(readers[in], n.OpType)
			}
			if n.OpType == "Transpose" && g.Initializer(in) != nil && len(g.Initializer(in).Dims) == 2 {
				t.Errorf("backward node %s transposes the frozen weight %s", n.Name, in)
			}
		}
	}
	for v, ops := range readers {
		shapeOnly := true
		for _, op := range ops {
			shapeOnly = shapeOnly && (op == "Shape" || op == "Size")
		}
		if shapeOnly {
			t.Errorf("the backward pass reads the forward value %s only for its shape (%v)", v, ops)
		}
	}
}
