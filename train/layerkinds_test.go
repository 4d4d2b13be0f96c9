package train

import (
	"testing"

	"github.com/peftonnx/peftonnx/models"
)

// TestTrainEmbeddingConvLoRA trains LoRA on ConvLM's embedding, Conv1d and
// Conv2d only (the gradient flows through Gather and both Conv rules) and
// checks that the eval loss falls and that every factor moved.
func TestTrainEmbeddingConvLoRA(t *testing.T) {
	requireORT(t)
	m, err := models.ConvLM(models.ConvLMTiny())
	if err != nil {
		t.Fatal(err)
	}
	m, params := injectLoRA(t, m, "model.embed_tokens", "model.conv1d", "model.conv2d")
	if len(params) != 6 {
		t.Fatalf("trainable: %v, want A and B of three layers", params)
	}
	opts := testOptions()
	opts.Steps = 40
	opts.Warmup = 2
	opts.LR = 3e-2
	opts.Eval = patternData(8, 8, 32, 7)
	tr, err := NewTrainer(m, params, patternData(32, 8, 32, 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	initial := paramValues(tr)
	before, err := tr.Evaluate(opts.Eval)
	if err != nil {
		t.Fatal(err)
	}
	for range opts.Steps {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	after, err := tr.Evaluate(opts.Eval)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("eval loss %.4f -> %.4f", before.Loss, after.Loss)
	if !(after.Loss < before.Loss-0.5) {
		t.Errorf("eval loss %.4f -> %.4f: training did not lower it by 0.5", before.Loss, after.Loss)
	}
	for name, v := range paramValues(tr) {
		moved := false
		for i := range v {
			if v[i] != initial[name][i] {
				moved = true
				break
			}
		}
		if !moved {
			t.Errorf("%s did not change in training", name)
		}
	}
}
