package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/models"
)

// tfBERT saves a BERT classifier exported as TF exports name its inputs
// (input_ids, input_mask, segment_ids) with int32 ids, with LoRA on its
// attention, and returns the path.
func tfBERT(t *testing.T, dir string, edit func(*models.BERTConfig)) string {
	t.Helper()
	c := models.BERTTiny()
	c.TokenTypeIDs, c.InputNames, c.IDType = true, models.TFBERTInputNames(), dtype.Int32
	if edit != nil {
		edit(&c)
	}
	m, err := models.BERT(c)
	if err != nil {
		t.Fatal(err)
	}
	return trainAdaptedModel(t, dir, "tf-bert-lora.onnx", m, ".*attention.*", "classifier")
}

// bertLines writes n classification examples; with named, each also gives
// input_mask and segment_ids (the second half of each line in segment 1).
func bertLines(n int, named bool) []string {
	var lines []string
	for i := range n {
		ids, mask, seg := make([]string, 6), make([]string, 6), make([]string, 6)
		for j := range ids {
			ids[j], mask[j], seg[j] = fmt.Sprint((5*i+j)%32), "1", fmt.Sprint(j/3)
		}
		line := fmt.Sprintf(`{"input_ids":[%s],"label":%d`, strings.Join(ids, ","), i%3)
		if named {
			line += fmt.Sprintf(`,"input_mask":[%s],"segment_ids":[%s]`, strings.Join(mask, ","), strings.Join(seg, ","))
		}
		lines = append(lines, line+"}")
	}
	return lines
}

// TestTrainTFBERT trains a BERT whose inputs are input_mask and
// segment_ids, int32, with no edit of the graph: from JSONL that names
// those inputs, and from JSONL that gives only input_ids, the defaults
// named in the output.
func TestTrainTFBERT(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := tfBERT(t, dir, nil)
	tests := []struct {
		reason string
		named  bool
		want   []string
	}{
		{"JSONL names the inputs", true, []string{
			`feed: input_ids int32[batch_size sequence_length]: the examples' token ids`,
			`feed: input_mask int32[batch_size sequence_length]: the data's "input_mask"`,
			`feed: segment_ids int32[batch_size sequence_length]: the data's "segment_ids"`}},
		{"JSONL gives only input_ids", false, []string{
			`feed: input_mask int32[batch_size sequence_length]: ones over the tokens and the past (zeros at padding), by default (the data gives no "input_mask")`,
			`feed: segment_ids int32[batch_size sequence_length]: zeros (every token in segment 0), by default (the data gives no "segment_ids")`}},
	}
	for i, tc := range tests {
		data := trainWriteLines(t, dir, fmt.Sprintf("bert%d.jsonl", i), bertLines(12, tc.named)...)
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		stdout := runOK(t, "train", model, "--data", data, "--out", out, "--steps", "12", "--batch", "4", "--lr", "1e-2", "--threads", "1")
		for _, w := range append(tc.want, "task: classification loss on logits", "trained 12 steps") {
			if !strings.Contains(stdout, w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.reason, w, stdout)
			}
		}
		if strings.Count(stdout, "feed: input_mask") != 1 {
			t.Errorf("%s: the feed of input_mask is not named exactly once:\n%s", tc.reason, stdout)
		}
		if !trainFileExists(filepath.Join(out, "adapter_model.safetensors")) {
			t.Errorf("%s: no adapter written", tc.reason)
		}
	}
}

// TestTrainBadFeeds checks that feeds that do not fit the model fail
// before training, with the input, its declared type and shape, and what
// was given.
func TestTrainBadFeeds(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := tfBERT(t, dir, nil)
	half := trainWriteLines(t, dir, "half.jsonl", `{"input_ids":[1,2,3],"segment_ids":[0,1.5,1],"label":0}`)
	short := trainWriteLines(t, dir, "short.jsonl", `{"input_ids":[1,2,3],"segment_ids":[0,1],"label":0}`)
	missing := trainWriteLines(t, dir, "missing.jsonl", `{"input_ids":[1,2,3],"segment_ids":[0,1,1],"label":0}`, `{"input_ids":[1,2],"label":1}`)
	tests := []struct {
		reason string
		data   string
		want   string
	}{
		{"not a whole number", half, `half.jsonl:1: "segment_ids", for the model's input segment_ids int32[batch_size sequence_length]: runtime: value 1.5 at index 1 is not a whole number for int32`},
		{"too few values", short, `short.jsonl:1: "segment_ids" has 2 values, input_ids 3: it feeds segment_ids int32[batch_size sequence_length], one value per token`},
		{"missing in a line", missing, `missing.jsonl:2: no "segment_ids", which line 1 gives to the model's input segment_ids`},
	}
	for _, tc := range tests {
		out := filepath.Join(dir, "out")
		stdout, stderr, code := cli(t, "train", model, "--data", tc.data, "--out", out, "--threads", "1")
		wantError(t, tc.reason, stdout, stderr, code, 1, tc.want)
	}
}
