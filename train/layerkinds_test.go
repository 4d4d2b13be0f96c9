package train

import (
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/graph"

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
	trainPattern(t, m, params, 40, 0.5)
}

// trainPattern trains params of m on the pattern task (vocabulary 32) for
// steps steps at 3e-2, and checks that the eval loss falls by drop and
// that every parameter moved. It returns the trainer, closed at the end of
// the test.
func trainPattern(t *testing.T, m *graph.Model, params []string, steps int, drop float64) *Trainer {
	t.Helper()
	opts := testOptions()
	opts.Steps = steps
	opts.Warmup = 2
	opts.LR = 3e-2
	opts.Eval = patternData(8, 8, 32, 7)
	tr, err := NewTrainer(m, params, patternData(32, 8, 32, 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	initial := paramValues(tr)
	before, after := evalAroundSteps(t, tr, opts)
	t.Logf("eval loss %.4f -> %.4f", before.Loss, after.Loss)
	if !(after.Loss < before.Loss-drop) {
		t.Errorf("eval loss %.4f -> %.4f: training did not lower it by %v", before.Loss, after.Loss, drop)
	}
	for name, v := range paramValues(tr) {
		if slices.Equal(v, initial[name]) {
			t.Errorf("%s did not change in training", name)
		}
	}
	return tr
}

// TestTrainFloatInputLayers trains LoRA on models whose input is a float
// vector, fed from a field named after it, with an MSE target: the IR-3
// MLP, whose weights are graph inputs with initializers and whose opset 8
// the trainer raises to 11 (its ops mean the same there), and the QDQ int8
// linear layer, whose branch trains on the float side, also where its
// output is quantized again before the next layer.
func TestTrainFloatInputLayers(t *testing.T) {
	requireORT(t)
	for _, c := range []struct {
		name    string
		build   func() (*graph.Model, error)
		target  string
		in, out int
	}{
		{"ir3", func() (*graph.Model, error) { return models.IR3MLP(2) }, "fc.*", 4, 3},
		{"qdq", func() (*graph.Model, error) { return models.QDQLinear(true, 3) }, "fc", 8, 6},
		// fc1's gradient crosses the quantized activation before fc2: the
		// straight-through estimator carries it.
		{"qdq-before-quantized-activation", func() (*graph.Model, error) { return models.QDQMLP(3) }, "fc1", 8, 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := c.build()
			if err != nil {
				t.Fatal(err)
			}
			m, params := injectLoRA(t, m, c.target)
			r := NewRNG(4)
			data := &Dataset{Path: "float"}
			for i := range 16 {
				x, y := make([]float64, c.in), make([]float32, c.out)
				for j := range x {
					x[j] = float64(r.Intn(64)-32) / 32
				}
				for j := range y {
					y[j] = float32(x[j%c.in])
				}
				data.Examples = append(data.Examples, Example{Fields: map[string][]float64{"x": x}, Target: y, Line: i + 1})
			}
			opts := testOptions()
			opts.Steps = 40
			opts.LR = 5e-2
			opts.Task = Regression
			opts.Eval = data
			tr, err := NewTrainer(m, params, data, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			before, after := evalAroundSteps(t, tr, opts)
			t.Logf("eval loss %.4f -> %.4f", before.Loss, after.Loss)
			if !(after.Loss < 0.7*before.Loss) {
				t.Errorf("eval loss %.4f -> %.4f: training did not lower it by 30%%", before.Loss, after.Loss)
			}
		})
	}
}

// evalAroundSteps evaluates tr on opts.Eval, takes opts.Steps steps, and
// evaluates again.
func evalAroundSteps(t *testing.T, tr *Trainer, opts Options) (before, after EvalResult) {
	t.Helper()
	before, err := tr.Evaluate(opts.Eval)
	if err != nil {
		t.Fatal(err)
	}
	for range opts.Steps {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	if after, err = tr.Evaluate(opts.Eval); err != nil {
		t.Fatal(err)
	}
	return before, after
}
