package train

import (
	"io"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/models"
)

// TestNothingToPredict refuses data whose loss scores nothing (issue 16,
// E3): every label -100, one-token examples under a causal loss, and a
// sequence length of 1; each before any gradient graph is built.
func TestNothingToPredict(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	masked := patternData(4, 6, 32, 1)
	for i := range masked.Examples {
		for j := range masked.Examples[i].Labels {
			masked.Examples[i].Labels[j] = IgnoreIndex
		}
	}
	oneToken := &Dataset{Path: "one.jsonl", Examples: []Example{{InputIDs: []int64{3}, Labels: []int64{3}, Line: 1}}}
	for _, tc := range []struct {
		name   string
		data   *Dataset
		seqLen int
		want   string
	}{
		{"all labels -100", masked, 0, "every label"},
		{"one-token examples", oneToken, 0, "one-token"},
		{"seq-len 1", patternData(4, 6, 32, 1), 1, "sequence length of 1"},
	} {
		opts := testOptions()
		opts.Steps, opts.SeqLen = 2, tc.seqLen
		built := false
		onGradientBuild = func() { built = true }
		tr, err := NewTrainer(m, params, tc.data, opts)
		onGradientBuild = nil
		if err == nil {
			tr.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "nothing to predict") || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.data.Path) {
			t.Errorf("%s: got %v, want a nothing-to-predict error naming %s and %q", tc.name, err, tc.data.Path, tc.want)
		}
		if built {
			t.Errorf("%s: the gradient graph was built before the data was refused", tc.name)
		}
	}
}

// TestResumeChecksOptimizer resumes a checkpoint with other optimizer
// settings or fewer steps than it has trained (issue 16, E5): each is an
// error naming the checkpoint and the setting; the same settings resume.
func TestResumeChecksOptimizer(t *testing.T) {
	requireORT(t)
	m, params := loraGPT2(t)
	data := patternData(8, 6, 32, 3)
	opts := testOptions()
	opts.Steps = 3
	tr, _ := trainSteps(t, m, params, data, opts)
	dir := t.TempDir()
	path, err := tr.SaveCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) {}, ""},
		{func(o *Options) { o.LR *= 2 }, "learning rate"},
		{func(o *Options) { o.Schedule = "cosine" }, "schedule"},
		{func(o *Options) { o.AdamW.WeightDecay = 0.1 }, "weight decay"},
		{func(o *Options) { o.Clip = 0.5 }, "gradient clip"},
		{func(o *Options) { o.Warmup = 1 }, "warmup"},
		{func(o *Options) { o.Steps = 2 }, "past this run's 2 steps"},
		{func(o *Options) { o.Steps = 5 }, "run of 3 steps"},
	} {
		o := opts
		tc.edit(&o)
		other, err := NewTrainer(m, params, data, o)
		if err != nil {
			t.Fatal(err)
		}
		err = other.LoadCheckpoint(path)
		other.Close()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("same settings: %v", err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path)):
			t.Errorf("got %v, want an error naming %s and %q", err, path, tc.want)
		}
	}
}

// endlessLine is a JSONL file whose first line is an input_ids list of n
// bytes; it counts what was read of it.
type endlessLine struct{ n, read int }

func (e *endlessLine) Read(p []byte) (int, error) {
	if e.read >= e.n {
		return 0, io.EOF
	}
	k := min(len(p), e.n-e.read)
	for i := range k {
		p[i] = "1,"[(e.read+i)%2]
	}
	if e.read == 0 {
		copy(p, `{"input_ids":[`)
	}
	e.read += k
	return k, nil
}

// TestLongLine reads a 100 MB JSONL line (issue 16, M3): an error naming
// the file, the line and the limit, having read little more than the
// limit; a lower limit holds too. A line that is a JSON array (E10) says
// what a line must be.
func TestLongLine(t *testing.T) {
	defer func(n int) { MaxLineBytes = n }(MaxLineBytes)
	for _, limit := range []int{MaxLineBytes, 1 << 10} {
		MaxLineBytes = limit
		r := &endlessLine{n: 100 << 20}
		_, err := ReadJSONL(io.MultiReader(strings.NewReader("{\"input_ids\":[1,2]}\n"), r), "big.jsonl", nil)
		if err == nil || !strings.Contains(err.Error(), "big.jsonl:2: the line is longer than") || !strings.Contains(err.Error(), "PEFTONNX_MAX_LINE_BYTES") {
			t.Errorf("limit %d: got %v", limit, err)
		}
		if r.read > limit+1<<16 {
			t.Errorf("limit %d: read %d bytes of the line", limit, r.read)
		}
	}
	_, err := ReadJSONL(strings.NewReader("[1,2,3]\n"), "array.jsonl", nil)
	if err == nil || !strings.Contains(err.Error(), "array.jsonl:1: the line is not a JSON object") || !strings.Contains(err.Error(), `{"input_ids"`) {
		t.Errorf("a JSON array line: got %v", err)
	}
}

// TestRotaryLimit trains the model builder's LLaMA, whose rotary cache
// covers 8 positions, on 12-token examples (issue 16, E4): an error
// naming the length, the limit and --seq-len, before the gradient graph;
// with a sequence length of 8 it trains.
func TestRotaryLimit(t *testing.T) {
	requireORT(t)
	for _, rotaryNodes := range []bool{false, true} {
		c := models.LlamaTiny()
		c.Producer, c.MaxPositions = models.ModelBuilder, 8
		c.Builder.RotaryNodes = rotaryNodes
		m, err := models.Llama(c)
		if err != nil {
			t.Fatal(err)
		}
		m, params := injectLoRA(t, m, ".*q_proj")
		data := patternData(4, 12, 32, 1)
		opts := testOptions()
		opts.Steps = 1
		built := false
		onGradientBuild = func() { built = true }
		tr, err := NewTrainer(m, params, data, opts)
		onGradientBuild = nil
		if err == nil {
			tr.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "tokens is longer than the 8 positions") || !strings.Contains(err.Error(), "--seq-len") || built {
			t.Errorf("rotary nodes %v: got %v (gradient graph built: %v)", rotaryNodes, err, built)
		}
		opts.SeqLen = 8
		tr, _ = trainSteps(t, m, params, data, opts)
		if tr.Step() != 1 {
			t.Errorf("rotary nodes %v: with --seq-len 8, step %d", rotaryNodes, tr.Step())
		}
	}
}
