package train

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// The real models in ../shared/models, exported by other people's tools,
// trained with LoRA on their linear layers for 30 steps on small fixed
// datasets: the training loss must fall clearly, and every tensor of the
// model other than the adapter must come out bit for bit as it went in.

// loadSharedModel loads a model under ../shared/models beside the
// project's root, or skips the test when that folder is absent.
func loadSharedModel(t testing.TB, rel string) *graph.Model {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "models", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared model not available: %v", err)
	}
	m, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// tensorBytes returns every initializer's bytes by name.
func tensorBytes(t testing.TB, m *graph.Model) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, init := range m.Graph().Initializer {
		b, err := m.TensorBytes(init)
		if err != nil {
			t.Fatal(err)
		}
		out[init.Name] = bytes.Clone(b)
	}
	return out
}

type realModelCase struct {
	name    string
	model   string
	targets []string
	r       int
	// lora adjusts the LoRA config beyond targets and rank.
	lora func(*adapter.LoRAConfig)
	data func(*testing.T) *Dataset
	opts func(*Options)
	task Task
}

func realModelCases() []realModelCase {
	return []realModelCase{
		{
			name: "tiny-llama-genai-fp16", model: "tiny-llama-genai-fp16/model.onnx",
			targets: []string{".*_proj", "lm_head"}, r: 8, task: CausalLM,
			data: func(t *testing.T) *Dataset {
				tok := loadLlamaTokenizer(t)
				var jsonl bytes.Buffer
				for _, s := range []string{
					"The quick brown fox jumps over the lazy dog.",
					"A journey of a thousand miles begins with a single step.",
					"To be or not to be, that is the question.",
					"All that glitters is not gold.",
					"The early bird catches the worm.",
					"Actions speak louder than words.",
					"Knowledge is power.",
					"Time flies like an arrow.",
				} {
					jsonl.WriteString(`{"text":"` + s + `"}` + "\n")
				}
				d, err := ReadJSONL(&jsonl, "proverbs.jsonl", tok)
				if err != nil {
					t.Fatal(err)
				}
				return d
			},
			opts: func(o *Options) { o.LR = 1e-2; o.PadID = 0 },
		},
		{
			// The same in float16, with fp32 adapters between casts and a
			// loss scale.
			name: "tiny-llama-genai-fp16-keep", model: "tiny-llama-genai-fp16/model.onnx",
			targets: []string{".*_proj", "lm_head"}, r: 8, task: CausalLM,
			data: func(t *testing.T) *Dataset {
				tok := loadLlamaTokenizer(t)
				var jsonl bytes.Buffer
				for _, s := range []string{
					"The quick brown fox jumps over the lazy dog.",
					"A journey of a thousand miles begins with a single step.",
					"To be or not to be, that is the question.",
					"All that glitters is not gold.",
					"The early bird catches the worm.",
					"Actions speak louder than words.",
					"Knowledge is power.",
					"Time flies like an arrow.",
				} {
					jsonl.WriteString(`{"text":"` + s + `"}` + "\n")
				}
				d, err := ReadJSONL(&jsonl, "proverbs.jsonl", tok)
				if err != nil {
					t.Fatal(err)
				}
				return d
			},
			opts: func(o *Options) { o.LR = 1e-2; o.PadID = 0; o.Half = KeepHalf },
		},
		{
			// GPT-2 without its head: regression of the last hidden state
			// (after ln_f) on a fixed target per token.
			name: "gpt2-past-torch16", model: "gpt2-past-torch16/model.onnx",
			targets: []string{".*c_attn", ".*c_proj", ".*c_fc"}, r: 4, task: Regression,
			// The final LayerNorm trains too (trainable_modules), and so do
			// the adapted layers' biases (trainable_bias "lora"): without
			// them the targets lie off the normalized outputs' reach.
			lora: func(c *adapter.LoRAConfig) {
				c.TrainableModules = []string{`ln_f\..*`}
				c.TrainableBias = adapter.BiasLoRA
			},
			data: func(*testing.T) *Dataset {
				d := &Dataset{Path: "targets"}
				for i := range 16 {
					target := []float32{1, -1, 0.5, -0.5}
					if i%2 == 1 {
						target = []float32{-0.5, 0.5, -1, 1}
					}
					id := int64(i) // the vocabulary has 20 tokens
					d.Examples = append(d.Examples, Example{InputIDs: []int64{id}, Labels: []int64{id}, Target: target, Line: i + 1})
				}
				return d
			},
			opts: func(o *Options) { o.LR = 1e-2 },
		},
		{
			// The DistilBERT fixture has hidden size 2, so every LayerNorm
			// maps a position to ±(1, −1) before its affine part: the [CLS]
			// feature the head reads carries one bit. The labels are the
			// opposite of the base model's own predictions, so the adapter
			// has to turn the head around.
			//
			name: "distilbert-optimum", model: "distilbert-optimum/model.onnx",
			targets: []string{".*_lin", ".*lin1", ".*lin2", "pre_classifier", "classifier"}, r: 2, task: SequenceClassification,
			data: func(t *testing.T) *Dataset {
				m := loadSharedModel(t, "distilbert-optimum/model.onnx")
				r := NewRNG(5)
				d := &Dataset{Path: "flipped"}
				var ids, mask []int64
				for i := range 16 {
					// No [CLS]: the first token, which the head reads,
					// varies, and so does the bit.
					var ex []int64
					for range 7 {
						ex = append(ex, int64(1000+r.Intn(9000)))
					}
					ex = append(ex, 102)
					ids = append(ids, ex...)
					for range ex {
						mask = append(mask, 1)
					}
					d.Examples = append(d.Examples, Example{InputIDs: ex, Labels: ex, HasLabel: true, Line: i + 1})
				}
				res := runModel(t, m, map[string]*rt.Tensor{
					"input_ids":      mustTensor(t)(rt.NewInt64([]int64{16, 8}, ids)),
					"attention_mask": mustTensor(t)(rt.NewInt64([]int64{16, 8}, mask)),
				}, "logits")
				logits := res["logits"].ToFloat32()
				classes := map[int64]int{}
				for i := range d.Examples {
					if logits[2*i] > logits[2*i+1] {
						d.Examples[i].Label = 1
					}
					classes[d.Examples[i].Label]++
				}
				if len(classes) != 2 {
					t.Fatalf("the base model puts every example in one class: %v", classes)
				}
				return d
			},
			opts: func(o *Options) { o.LR = 5e-2 },
		},
	}
}

// TestRealModelsTrain trains each real model for 30 steps.
func TestRealModelsTrain(t *testing.T) {
	requireORT(t)
	for _, c := range realModelCases() {
		t.Run(c.name, func(t *testing.T) {
			m := loadSharedModel(t, c.model)
			before := tensorBytes(t, m)
			adapted := m.Clone()
			lc := adapter.DefaultLoRAConfig(c.targets...)
			lc.R, lc.Alpha = c.r, float64(2*c.r)
			if c.lora != nil {
				c.lora(&lc)
			}
			_, sum, err := rewrite.InjectLoRA(adapted, lc, rewrite.WithSeed(1))
			if err != nil {
				t.Fatal(err)
			}
			opts := DefaultOptions()
			opts.Steps = 30
			opts.BatchSize = 4
			opts.Schedule = "constant"
			opts.Session = []rt.Option{rt.WithIntraOpThreads(1)}
			c.opts(&opts)
			data := c.data(t)
			tr, err := NewTrainer(adapted, sum.Trainable(), data, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if tr.Task() != c.task {
				t.Errorf("detected task %q, want %q", tr.Task(), c.task)
			}
			first, err := tr.Evaluate(data)
			if err != nil {
				t.Fatal(err)
			}
			var losses []float64
			for range 30 {
				r, err := tr.TrainStep()
				if err != nil {
					t.Fatal(err)
				}
				losses = append(losses, r.Loss)
			}
			last, err := tr.Evaluate(data)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s (%s, %d LoRA and %d other trainable tensors, upcast %v): training-set loss %.4f -> %.4f; step losses %.4f ... %.4f",
				c.name, tr.Task(), len(sum.LoRA), len(sum.Extra), tr.Upcast(), first.Loss, last.Loss, losses[0], losses[len(losses)-1])
			if !(last.Loss < 0.7*first.Loss) {
				t.Errorf("training-set loss did not fall clearly: %v -> %v", first.Loss, last.Loss)
			}

			out, err := tr.Model()
			if err != nil {
				t.Fatal(err)
			}
			trained := map[string]bool{}
			for _, p := range sum.Trainable() {
				trained[p] = true
			}
			after := tensorBytes(t, out)
			for name, b := range before {
				if !trained[name] && !bytes.Equal(after[name], b) {
					t.Errorf("frozen initializer %s changed in training", name)
				}
			}
			changed := 0
			for name := range trained {
				if !bytes.Equal(after[name], tensorBytes(t, adapted)[name]) {
					changed++
				}
			}
			if changed == 0 {
				t.Errorf("no adapter tensor changed")
			}
			if !slices.Equal(tensorNames(out), tensorNames(adapted)) {
				t.Errorf("the trained model's initializers are not the adapted model's")
			}
			if _, err := rewrite.ExtractAdapter(out); err != nil {
				t.Errorf("extracting the trained adapter: %v", err)
			}
		})
	}
}

func tensorNames(m *graph.Model) []string {
	var names []string
	for _, init := range m.Graph().Initializer {
		names = append(names, init.Name)
	}
	return names
}
