package train

import (
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// unknownOpGPT2 is the tiny GPT-2 whose embedding sum passes an op that
// autodiff has no entry for (an identity Einsum): inference knows nothing
// of any value after it.
func unknownOpGPT2(t *testing.T) *graph.Model {
	t.Helper()
	c := models.GPT2Tiny()
	c.InitStd = 0.1
	m, err := models.GPT2(c)
	if err != nil {
		t.Fatal(err)
	}
	add := m.NodeByName("/transformer/Add")
	if add == nil {
		t.Fatal("no /transformer/Add")
	}
	out := add.Output[0]
	mid := m.UniqueName(out + "_einsum")
	for _, n := range m.Consumers(out) {
		for i, in := range n.Input {
			if in == out {
				n.Input[i] = mid
			}
		}
	}
	m.AddNode(&onnxpb.NodeProto{Name: "/transformer/Einsum", OpType: "Einsum", Input: []string{out}, Output: []string{mid},
		Attribute: []*onnxpb.AttributeProto{graph.AttrString("equation", "bsh->bsh")}})
	m.Reindex()
	return m
}

// TestTrainPastUnknownOp: LoRA layers after an op that autodiff does not
// know train, the trainer's probe run on the first batch telling the
// ranks that inference cannot; without the probe the gradient graph
// cannot be built.
func TestTrainPastUnknownOp(t *testing.T) {
	requireORT(t)
	m := unknownOpGPT2(t)
	lc := adapter.DefaultLoRAConfig(".*c_attn", ".*c_proj", ".*c_fc", "lm_head")
	lc.R, lc.Alpha = 4, 8
	a := m.Clone()
	_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	loss, err := CausalLMLoss(a, "logits")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := autodiff.Build(a, loss, sum.Trainable()); err == nil || !strings.Contains(err.Error(), "must be known") {
		t.Errorf("without a probe: got %v, want an error about unknown ranks", err)
	} else {
		t.Logf("without a probe: %v", err)
	}
	trainFor30(t, m, CausalLM, fusedData(CausalLM, true), 2e-2, func(a *graph.Model) (Summaryish, error) {
		_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	})
}
