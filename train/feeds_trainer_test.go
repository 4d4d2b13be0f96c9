package train

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// tfBERT returns the tiny BERT with TF's input names and int32 ids, with
// the head c.Head, LoRA on its attention and head.
func tfBERT(t *testing.T, edit func(*models.BERTConfig)) (*graph.Model, []string) {
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
	return injectLoRA(t, m, ".*attention.*", "classifier", "cls.*")
}

// classData is n examples of length 5 to 6 with a class each.
func classData(n int) *Dataset {
	d := &Dataset{Path: "classes.jsonl"}
	for i := range n {
		ids := make([]int64, 5+i%2)
		for j := range ids {
			ids[j] = int64((7*i + j) % 32)
		}
		d.Examples = append(d.Examples, Example{InputIDs: ids, Labels: slices.Clone(ids), Label: int64(i % 3), HasLabel: true, Line: i + 1})
	}
	return d
}

// TestTrainerFeedsBeforeGradient checks that feeds that do not fit the
// model fail in NewTrainer before the gradient graph is built, and that
// the same model trains once they fit.
func TestTrainerFeedsBeforeGradient(t *testing.T) {
	requireORT(t)
	builds := 0
	onGradientBuild = func() { builds++ }
	defer func() { onGradientBuild = nil }()

	m, params := tfBERT(t, nil)
	for _, in := range m.Graph().Input { // the export fixes the length at 8
		if dims := in.GetType().GetTensorType().GetShape().GetDim(); len(dims) == 2 {
			dims[1].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 8}
		}
	}
	opts := testOptions()
	opts.Steps = 2
	_, err := NewTrainer(m, params, classData(8), opts)
	want := "train: the first batch does not fit the model: input input_ids int32[batch_size 8]: given int32 [4 6]: dimension 1 is 6, want 8 (the model takes exactly 8 tokens per example"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v, want one containing %q", err, want)
	}
	if builds != 0 {
		t.Errorf("the gradient graph was built %d times before the bad feed was found", builds)
	}
	opts.SeqLen, opts.PadToSeqLen = 8, true
	tr, losses := trainSteps(t, m, params, classData(8), opts)
	if builds != 1 || len(losses) != 2 || tr.Task() != SequenceClassification {
		t.Errorf("padded to 8: %d gradient builds, losses %v, task %s", builds, losses, tr.Task())
	}
	notes := strings.Join(tr.FeedNotes(), "\n")
	for _, w := range []string{"input_ids int32[batch_size 8]: the examples' token ids", `input_mask int32[batch_size 8]: ones over the tokens`, `segment_ids int32[batch_size 8]: zeros`} {
		if !strings.Contains(notes, w) {
			t.Errorf("feed notes lack %q:\n%s", w, notes)
		}
	}
}

// TestTrainerDataFields feeds input_mask and segment_ids from the data:
// the mask of the data is what the model sees (a mask that hides every
// token but the first gives the loss of a one-token example).
func TestTrainerDataFields(t *testing.T) {
	requireORT(t)
	m, params := tfBERT(t, func(c *models.BERTConfig) { c.InitStd = 0.25 })
	opts := testOptions()
	opts.Steps, opts.LR = 1, 0
	one := func(ex Example, fields map[string][]float64) *Dataset {
		ex.Fields = fields
		return &Dataset{Path: "one.jsonl", Examples: []Example{ex}}
	}
	ex := Example{InputIDs: []int64{3, 9, 4, 7}, Labels: []int64{3, 9, 4, 7}, Label: 1, HasLabel: true, Line: 1}
	loss := func(d *Dataset) float64 {
		tr, err := NewTrainer(m, params, d, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		r, err := tr.Evaluate(d)
		if err != nil {
			t.Fatal(err)
		}
		return r.Loss
	}
	masked := loss(one(ex, map[string][]float64{"input_mask": {1, 0, 0, 0}, "segment_ids": {0, 0, 0, 0}}))
	first := loss(one(Example{InputIDs: []int64{3}, Labels: []int64{3}, Label: 1, HasLabel: true, Line: 1}, nil))
	whole := loss(one(ex, map[string][]float64{"attention_mask": {1, 1, 1, 1}}))
	if math.Abs(masked-first) > 1e-4 {
		t.Errorf("a mask of the first token: loss %v, want the one-token example's %v", masked, first)
	}
	if math.Abs(masked-whole) < 1e-4 {
		t.Errorf("the data's mask had no effect: %v and %v", masked, whole)
	}
	segments := loss(one(ex, map[string][]float64{"segment_ids": {0, 0, 1, 1}}))
	if math.Abs(segments-whole) < 1e-4 {
		t.Errorf("the data's segment ids had no effect: %v and %v", segments, whole)
	}
}

// TestTokenLoss trains a masked-LM BERT with the token loss: the loss the
// trainer reports is the unshifted cross entropy of the model's own
// logits, computed here in Go, and not the shifted one, which differs.
func TestTokenLoss(t *testing.T) {
	requireORT(t)
	m, params := tfBERT(t, func(c *models.BERTConfig) { c.Head = models.BERTMaskedLM; c.InitStd = 0.2 })
	c, err := ExplainTask(m, "")
	if err != nil || c.Task != CausalLM || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "looks like an encoder (it takes token types, segment_ids; it has no KV cache and builds no causal mask)") {
		t.Errorf("auto task of a masked LM: got %+v, %v; want causal with a warning that it looks like an encoder", c, err)
	}
	d := &Dataset{Path: "mlm.jsonl"}
	for i := range 8 {
		ids := []int64{int64(i + 1), int64(2*i + 3), 5, int64(i + 9)}
		labels := []int64{IgnoreIndex, int64(2*i + 3), IgnoreIndex, int64((i * 5) % 32)}
		d.Examples = append(d.Examples, Example{InputIDs: ids, Labels: labels, Line: i + 1})
	}
	opts := testOptions()
	opts.Task, opts.Steps, opts.BatchSize = TokenClassification, 30, 8
	tr, losses := trainSteps(t, m, params, d, opts)
	if tr.Output() != "logits" || losses[len(losses)-1] >= losses[0] {
		t.Errorf("token loss: output %q, losses %v: want them to fall", tr.Output(), losses)
	}
	// The loss of the trained parameters against the model's logits.
	trained, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	b := Collate(d.Examples, 0, 0, false)
	in := map[string]*rt.Tensor{}
	for name, v := range map[string][]int64{"input_ids": b.InputIDs, "input_mask": b.AttentionMask, "segment_ids": make([]int64, len(b.InputIDs))} {
		in[name] = mustTensor(t)(rt.FromInt64s(dtype.Int32, []int64{int64(b.Size), int64(b.SeqLen)}, v))
	}
	logits := runModel(t, trained, in, "logits")["logits"].Float32()
	unshifted := tokenLossReference(logits, b.Labels, 32)
	shifted := causalLMLossReference(logits, b.Labels, b.Size, b.SeqLen, 32)
	r, err := tr.Evaluate(d)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Loss-unshifted) > 1e-4*math.Max(1, unshifted) {
		t.Errorf("eval loss %v, want the unshifted cross entropy %v", r.Loss, unshifted)
	}
	if math.Abs(r.Loss-shifted) < 0.1 {
		t.Errorf("eval loss %v is the shifted cross entropy %v: the fixture does not tell them apart", r.Loss, shifted)
	}
	if r.Tokens != 16 || r.Accuracy <= 0 {
		t.Errorf("eval scored %d tokens with accuracy %v, want 16 and some right", r.Tokens, r.Accuracy)
	}
}

// tokenLossReference is the mean cross entropy of logits [n, vocab]
// against labels [n], skipping IgnoreIndex.
func tokenLossReference(logits []float32, labels []int64, vocab int) float64 {
	var sum float64
	count := 0
	for i, l := range labels {
		if l == IgnoreIndex {
			continue
		}
		row := logits[i*vocab : (i+1)*vocab]
		sum += logSumExp(row) - float64(row[l])
		count++
	}
	return sum / math.Max(1, float64(count))
}

// TestTrainerDecoderVariants trains decoders whose inputs are not
// LLaMA's: int32 ids, masks and positions; Whisper's cache names; one
// past for every layer; a hybrid with convolution states and caches on
// some layers. Each is fed its defaults (empty caches, zero states) and
// its loss falls.
func TestTrainerDecoderVariants(t *testing.T) {
	requireORT(t)
	tests := []struct {
		name  string
		build func() (*graph.Model, error)
		notes []string
	}{
		{"int32", func() (*graph.Model, error) {
			m, err := models.Llama(models.LlamaTiny())
			if err == nil {
				err = models.Int32Inputs(m, "input_ids", "attention_mask", "position_ids")
			}
			return m, err
		}, []string{"input_ids int32[batch_size sequence_length]: the examples' token ids", "position_ids int32[batch_size sequence_length]: 0, 1, 2"}},
		{"whisper names", func() (*graph.Model, error) {
			m, err := models.Llama(models.LlamaTiny())
			if err == nil {
				err = models.WhisperCacheNames(m)
			}
			return m, err
		}, []string{"past_key_self_0 … past_value_self_1 (4 inputs): empty KV caches (past length 0), by default"}},
		{"single past", func() (*graph.Model, error) {
			m, err := models.Llama(models.LlamaTiny())
			if err == nil {
				err = models.SinglePast(m)
			}
			return m, err
		}, []string{"past: an empty KV cache (past length 0), by default"}},
		{"hybrid", func() (*graph.Model, error) { return models.Hybrid(models.HybridTiny()) },
			[]string{`past_conv.0 float32[batch_size 16 3]: zeros, by default (the data gives no "past_conv.0")`, "past_key_values.1.key … past_key_values.3.value (4 inputs): empty KV caches"}},
		{"hybrid with a prefix", func() (*graph.Model, error) {
			c := models.HybridTiny()
			c.InitStd = 0.2
			return models.Hybrid(c)
		}, []string{`past_conv.2 float32[batch_size 16 3]: zeros`, "past_key_values.1.key … past_key_values.3.value (4 inputs): empty KV caches"}},
	}
	for _, tc := range tests {
		m, err := tc.build()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var params []string
		if strings.HasSuffix(tc.name, "prefix") {
			_, sum, err := rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 4}, rewrite.PrefixSeed(1))
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			params = sum.Trainable()
		} else {
			m, params = injectLoRA(t, m, ".*_proj", "lm_head")
		}
		opts := testOptions()
		opts.Steps = 20
		if strings.HasSuffix(tc.name, "prefix") {
			opts.LR, opts.Steps = 0.1, 40
		}
		tr, losses := trainSteps(t, m, params, patternData(16, 8, 32, 5), opts)
		mean := func(v []float64) float64 {
			s := 0.0
			for _, x := range v {
				s += x
			}
			return s / float64(len(v))
		}
		if first, last := mean(losses[:4]), mean(losses[len(losses)-4:]); last >= first*0.9 {
			t.Errorf("%s: losses %v do not fall (the first 4 average %.3f, the last 4 %.3f)", tc.name, losses, first, last)
		}
		notes := strings.Join(tr.FeedNotes(), "\n")
		for _, w := range tc.notes {
			if !strings.Contains(notes, w) {
				t.Errorf("%s: feed notes lack %q:\n%s", tc.name, w, notes)
			}
		}
	}
}
