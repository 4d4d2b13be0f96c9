package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	roles "github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/npy"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// inputsFor writes an .npy file for each input of the model at path that
// --defaults does not fill (token ids, and inputs of no known role) and
// returns the --input flags: ids of 1, other values 0.5, every dynamic
// dimension 1 for the batch and 3 otherwise.
func inputsFor(t *testing.T, path, dir string) []string {
	t.Helper()
	m, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var ins []roles.Input
	for _, v := range m.Graph().Input {
		if m.Initializer(v.Name) != nil {
			continue
		}
		ins = append(ins, roles.FromValueInfo(v, false))
	}
	var args []string
	for i, s := range roles.Classify(ins, nil).Slots() {
		if s.HasDefault() {
			continue
		}
		shape := make([]int64, len(s.Shape))
		for j, d := range s.Shape {
			switch {
			case d >= 0:
				shape[j] = d
			case j == 0:
				shape[j] = 1
			default:
				shape[j] = 3
			}
		}
		n := int(graph.NumElements(shape))
		var x *ortrt.Tensor
		if s.Role == roles.TokenIDs {
			ids := make([]int64, n)
			for k := range ids {
				ids[k] = 1
			}
			x, err = ortrt.FromInt64s(s.DType, shape, ids)
		} else {
			v := make([]float64, n)
			for k := range v {
				v[k] = 0.5
			}
			x, err = ortrt.FromFloat64s(s.DType, shape, v)
		}
		if err != nil {
			t.Fatalf("%s: input %s: %v", path, s.Input, err)
		}
		a, _, err := arrayFromTensor(x)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, fmt.Sprintf("in%d.npy", i))
		if err := npy.WriteFile(file, a); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--input", s.Name+"="+file)
	}
	return args
}

// TestRunNeverPanics runs every model of ../shared/models, every builder
// of package models and models with string and sequence outputs: each
// run writes its outputs, or fails with one line, and never panics.
func TestRunNeverPanics(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	paths := map[string]string{}
	for _, name := range []string{"tiny-llama-genai-fp16", "gpt2-past-torch16", "distilbert-optimum", "lora-inputs-ort"} {
		paths[name] = sharedModel(t, name)
	}
	builds := map[string]func() (*graph.Model, error){
		"llama": func() (*graph.Model, error) { return models.Llama(models.LlamaTiny()) },
		"gpt2":  func() (*graph.Model, error) { return models.GPT2(models.GPT2Tiny()) },
		"bert":  func() (*graph.Model, error) { return models.BERT(models.BERTTiny()) },
		"bert-mlm-tf": func() (*graph.Model, error) {
			c := models.BERTTiny()
			c.Head, c.TokenTypeIDs, c.InputNames, c.IDType = models.BERTMaskedLM, true, models.TFBERTInputNames(), dtype.Int32
			return models.BERT(c)
		},
		"hybrid": func() (*graph.Model, error) { return models.Hybrid(models.HybridTiny()) },
		"llama-modelbuilder": func() (*graph.Model, error) {
			c := models.LlamaTiny()
			c.Producer, c.Hidden = models.ModelBuilder, 64 // GroupQueryAttention wants heads of a multiple of 16
			return models.Llama(c)
		},
		"gpt2-optimizer": func() (*graph.Model, error) {
			c := models.GPT2Tiny()
			c.Producer = models.TransformerOptimizer
			return models.GPT2(c)
		},
		"bert-optimizer": func() (*graph.Model, error) {
			c := models.BERTTiny()
			c.Producer = models.TransformerOptimizer
			return models.BERT(c)
		},
		"llama-single-past": func() (*graph.Model, error) {
			m, err := models.Llama(models.LlamaTiny())
			if err == nil {
				err = models.SinglePast(m)
			}
			return m, err
		},
		"scores-and-more":  func() (*graph.Model, error) { return models.NonTensorOutputs(models.NonTensorConfig{Scores: true}) },
		"strings-and-maps": func() (*graph.Model, error) { return models.NonTensorOutputs(models.NonTensorConfig{}) },
	}
	for name, build := range builds {
		m, err := build()
		if err != nil {
			t.Fatal(err)
		}
		paths[name] = filepath.Join(dir, name+".onnx")
		if err := m.Save(paths[name], graph.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, path := range paths {
		sub := filepath.Join(dir, name)
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"run", path, "--defaults", "--output-dir", filepath.Join(sub, "out"), "--threads", "1"}, inputsFor(t, path, sub)...)
		stdout, stderr, code := cli(t, args...)
		if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
			t.Errorf("%s: a panic reached the user: %s", name, stderr)
			continue
		}
		switch name {
		case "strings-and-maps", "scores-and-more":
			for _, w := range []string{"label.json", "probabilities.json"} {
				if code != 0 || !strings.Contains(stdout, w) {
					t.Errorf("%s: got status %d, stdout %q, stderr %q; want 0 and %s", name, code, stdout, stderr, w)
				}
			}
		default:
			if code != 0 {
				t.Errorf("%s: got status %d, stderr %q", name, code, stderr)
			}
		}
	}
}

// TestRunDefaults checks what --defaults feeds a TF BERT with int32
// inputs, given only its token ids, and that without it the missing
// inputs are still an error.
func TestRunDefaults(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	c := models.BERTTiny()
	c.TokenTypeIDs, c.InputNames, c.IDType = true, models.TFBERTInputNames(), dtype.Int32
	m, err := models.BERT(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bert.onnx")
	if err := m.Save(path, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	inputs := inputsFor(t, path, dir)
	stdout, stderr, code := cli(t, append([]string{"run", path, "--defaults", "--output-dir", filepath.Join(dir, "out")}, inputs...)...)
	for _, w := range []string{"peftonnx: note: feeding input_mask as int32 (1, 3): ones", "peftonnx: note: feeding segment_ids as int32 (1, 3): zeros"} {
		if code != 0 || !strings.Contains(stderr, w) || !strings.Contains(stdout, "logits") {
			t.Errorf("--defaults: got status %d, stdout %q, stderr %q; want %q", code, stdout, stderr, w)
		}
	}
	_, stderr, code = cli(t, append([]string{"run", path, "--output-dir", filepath.Join(dir, "out2")}, inputs...)...)
	if code != 1 || !strings.Contains(stderr, "missing --input for input_mask int32 [batch_size, sequence_length], segment_ids int32 [batch_size, sequence_length]") {
		t.Errorf("without --defaults: got status %d, stderr %q", code, stderr)
	}
}

// TestRunNonTensorOutputs runs a classifier whose label is a string tensor
// and whose probabilities are a ZipMap sequence of maps: run writes both
// as JSON, and they agree with a softmax and argmax of the input computed
// here and with the float scores output.
func TestRunNonTensorOutputs(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	m, err := models.NonTensorOutputs(models.NonTensorConfig{Scores: true})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "cls.onnx")
	if err := m.Save(path, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	x := []float32{0.1, 2, -1, 3, 0, 1}
	in := writeNpy(t, dir, "x.npy", []int64{2, 3}, x)
	out := filepath.Join(dir, "out")
	stdout, stderr, code := cli(t, "run", path, "--input", "x="+in, "--output-dir", out)
	if code != 0 || stderr != "" {
		t.Fatalf("status %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "label          string    (2,)") || !strings.Contains(stdout, "probabilities  sequence  (2)") {
		t.Errorf("stdout:\n%s", stdout)
	}
	var labels []string
	var probs []map[string]float64
	for file, dst := range map[string]any{"label.json": &labels, "probabilities.json": &probs} {
		b, err := os.ReadFile(filepath.Join(out, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("%s: %v\n%s", file, err, b)
		}
	}
	if len(labels) != 2 || len(probs) != 2 {
		t.Fatalf("labels %v, probabilities %v", labels, probs)
	}
	for row := range 2 {
		z := x[row*3 : row*3+3]
		sum, best := 0.0, 0
		for j, v := range z {
			sum += math.Exp(float64(v))
			if v > z[best] {
				best = j
			}
		}
		if labels[row] != fmt.Sprint(best) {
			t.Errorf("row %d: label %q, want %d", row, labels[row], best)
		}
		for j, v := range z {
			want := math.Exp(float64(v)) / sum
			if got := probs[row][fmt.Sprint(j)]; math.Abs(got-want) > 1e-6 {
				t.Errorf("row %d class %d: probability %v, want %v", row, j, got, want)
			}
		}
	}
}
