package train

import (
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

func TestDetectTask(t *testing.T) {
	gpt2, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	bert, err := models.BERT(models.BERTTiny())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		m      *graph.Model
		task   Task
		output string
		err    string
	}{
		{"decoder", gpt2, CausalLM, "logits", ""},
		{"classifier", bert, SequenceClassification, "logits", ""},
		{"bare encoder", identityModel(17, dtype.Float32, "last_hidden_state", graph.DimParam("batch"), graph.DimParam("seq"), graph.DimValue(8)), Regression, "last_hidden_state", ""},
		{"logits without shape", shapeless(identityModel(17, dtype.Float32, "logits")), "", "", "no declared shape"},
		{"logits of rank 4", identityModel(17, dtype.Float32, "logits", graph.DimValues([]int64{1, 2, 3, 4})...), "", "", "rank 4"},
	}
	for i, tt := range tests {
		task, out, err := DetectTask(tt.m)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("test %d (%s): got error %v, want %q", i, tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || task != tt.task || out != tt.output {
			t.Errorf("unexpected result for test %d (%s): got %q %q %v want %q %q", i, tt.name, task, out, err, tt.task, tt.output)
		}
	}
}

// shapeless drops the declared shape of m's outputs.
func shapeless(m *graph.Model) *graph.Model {
	for _, o := range m.Graph().Output {
		o.GetType().GetTensorType().Shape = nil
	}
	return m
}

func TestModelVocab(t *testing.T) {
	gpt2, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	bert, err := models.BERT(models.BERTTiny())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		m    *graph.Model
		want int
		ok   bool
	}{
		{"gpt2 embedding", gpt2, 32, true},
		{"bert embedding", bert, models.BERTTiny().VocabSize, true},
		{"logits only", identityModel(17, dtype.Float32, "logits", graph.DimParam("b"), graph.DimParam("s"), graph.DimValue(7)), 7, true},
		{"neither", identityModel(17, dtype.Float32, "y", graph.DimValue(3)), 0, false},
	}
	for i, tt := range tests {
		got, ok := ModelVocab(tt.m)
		if got != tt.want || ok != tt.ok {
			t.Errorf("unexpected result for test %d (%s): got %d, %v want %d, %v", i, tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
