package train

import (
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
)

// legacyModel loads a model that an earlier peftonnx adapted, whose
// records hold configs with Go field names (testdata/legacy/README.md).
func legacyModel(t *testing.T, name string) (*graph.Model, []string) {
	t.Helper()
	m, err := graph.Load(filepath.Join("..", "testdata", "legacy", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	sum, err := rewrite.Summarize(m)
	if err != nil {
		t.Fatal(err)
	}
	return m, sum.Trainable()
}

// TestLegacyModelsTrain: models adapted by an earlier version train, and
// the loss falls.
func TestLegacyModelsTrain(t *testing.T) {
	requireORT(t)
	for _, name := range []string{"llama-lora.onnx", "gpt2-lora-qv.onnx", "llama-prefix.onnx"} {
		t.Run(name, func(t *testing.T) {
			m, params := legacyModel(t, name)
			vocab, ok := ModelVocab(m)
			if !ok {
				t.Fatal("no vocabulary size")
			}
			opts := testOptions()
			opts.Steps, opts.LR, opts.Schedule = 30, 5e-2, "constant"
			tr, losses := trainSteps(t, m, params, patternData(16, 8, vocab, 1), opts)
			if first, last := losses[0], losses[len(losses)-1]; !(last < first) {
				t.Errorf("loss %.4f -> %.4f: it did not fall", first, last)
			}
			if _, err := tr.Adapter(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLegacyLoRAPlusScale: the trainer applies the lora_plus_scale 4 that
// llama-lora.onnx records. The model has LoRA dropout, whose masks differ
// from session to session, so B's learning rate is read from the step
// itself: B starts at zero, and AdamW's first step moves each element by
// the learning rate times g/(|g|+ε), that is by the rate for any gradient
// well above ε. A does not move in the first step (its gradient is zero
// while B is).
func TestLegacyLoRAPlusScale(t *testing.T) {
	requireORT(t)
	const lr = 1e-2
	step := func(plus float64) map[string][]float32 {
		m, params := legacyModel(t, "llama-lora.onnx")
		opts := testOptions()
		opts.Steps, opts.Schedule, opts.LR, opts.LoRAPlusScale = 1, "constant", lr, plus
		tr, _ := trainSteps(t, m, params, patternData(8, 8, 32, 1), opts)
		return paramValues(tr)
	}
	for _, c := range []struct {
		name string
		plus float64 // the trainer's option
		want float64 // B's learning rate, in units of lr
	}{
		{"recorded", 0, 4},
		{"overridden", 1, 1},
	} {
		nb := 0
		for name, v := range step(c.plus) {
			if !strings.Contains(name, "lora_B") {
				continue
			}
			nb++
			moved := 0.0
			for _, x := range v {
				moved = max(moved, math.Abs(float64(x)))
			}
			if got := moved / lr; math.Abs(got-c.want) > 1e-3*c.want {
				t.Errorf("%s: %s moved by %.6g·lr in the first step, want %g·lr", c.name, name, got, c.want)
			}
		}
		if nb != 4 {
			t.Errorf("%s: %d lora_B parameters, want 4", c.name, nb)
		}
	}
}

// TestTrainerAdapter: Adapter returns what rewrite.Extract reads from
// Model, for LoRA in float32 and float16 and for a prefix, without
// sharing the trainer's parameters.
func TestTrainerAdapter(t *testing.T) {
	requireORT(t)
	llama := func() *graph.Model {
		m, err := models.Llama(models.LlamaTiny())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	fp16 := adapter.DefaultLoRAConfig(".*q_proj")
	fp16.R, fp16.DType, fp16.TrainableBias = 2, dtype.Float16, adapter.BiasAll
	for _, c := range []struct {
		name   string
		inject func(m *graph.Model) (rewrite.Summary, error)
	}{
		{"lora float16", func(m *graph.Model) (rewrite.Summary, error) {
			_, sum, err := rewrite.InjectLoRA(m, fp16, rewrite.WithSeed(1))
			return sum, err
		}},
		{"lora float32 with trained norms", func(m *graph.Model) (rewrite.Summary, error) {
			cfg := adapter.DefaultLoRAConfig(".*v_proj")
			cfg.TrainableModules = []string{".*norm.*"}
			_, sum, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(2))
			return sum, err
		}},
		{"prefix", func(m *graph.Model) (rewrite.Summary, error) {
			_, sum, err := rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2, PrefixProjection: true, PrefixProjectionHiddenSize: 8})
			return sum, err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := llama()
			sum, err := c.inject(m)
			if err != nil {
				t.Fatal(err)
			}
			opts := testOptions()
			opts.Steps = 3
			tr, _ := trainSteps(t, m, sum.Trainable(), patternData(8, 8, 32, 1), opts)
			got, err := tr.Adapter()
			if err != nil {
				t.Fatal(err)
			}
			trained, err := tr.Model()
			if err != nil {
				t.Fatal(err)
			}
			want, err := rewrite.Extract(trained)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Adapter differs from rewrite.Extract of Model")
			}
			before, err := rewrite.Extract(m)
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(got, before) {
				t.Errorf("Adapter holds the untrained values")
			}
			for _, p := range tr.Params() {
				p.Data[0] += 1 // the adapter keeps copies
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the adapter shares the trainer's parameters")
			}
		})
	}
	tr, _ := trainSteps(t, llama(), []string{"model.layers.0.self_attn.q_proj.weight"}, patternData(8, 8, 32, 1), func() Options { o := testOptions(); o.Steps = 1; return o }())
	if _, err := tr.Adapter(); err == nil || !strings.Contains(err.Error(), "carries no LoRA branch and no prefix") {
		t.Errorf("a model without an adapter: got %v, want ErrNoAdapter", err)
	}
}
