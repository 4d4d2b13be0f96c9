package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// genStd makes the tiny models' weights large enough that greedy choice
// changes from step to step, so that a wrong cache or position shows in
// the tokens.
const genStd = 1.0

// modelSession builds m into a session on one thread.
func modelSession(t testing.TB, m *graph.Model, err error) *rt.Session {
	t.Helper()
	requireORT(t)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return mustSession(t, b, rt.WithIntraOpThreads(1))
}

func llamaTiny(t testing.TB, edit func(*models.LlamaConfig)) *rt.Session {
	c := models.LlamaTiny()
	c.InitStd = genStd
	if edit != nil {
		edit(&c)
	}
	m, err := models.Llama(c)
	return modelSession(t, m, err)
}

func gpt2Tiny(t testing.TB) *rt.Session {
	c := models.GPT2Tiny()
	c.InitStd = genStd
	m, err := models.GPT2(c)
	return modelSession(t, m, err)
}

func newGenerator(t testing.TB, s *rt.Session) *rt.Generator {
	t.Helper()
	g, err := rt.NewGenerator(s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestNewGeneratorInfo(t *testing.T) {
	requireORT(t)
	perLayer := func(n int) (past, present []string) {
		for i := range n {
			past = append(past, fmt.Sprintf("past_key_values.%d.key", i), fmt.Sprintf("past_key_values.%d.value", i))
			present = append(present, fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i))
		}
		return past, present
	}
	lPast, lPresent := perLayer(2)
	var sPast, sPresent []string
	for i := range 12 {
		sPast = append(sPast, fmt.Sprintf("past_%d", i))
		sPresent = append(sPresent, fmt.Sprintf("present_%d", i))
	}
	tests := []struct {
		name    string
		session func(t *testing.T) *rt.Session
		want    rt.DecoderInfo
	}{
		{"llama tiny", func(t *testing.T) *rt.Session { return llamaTiny(t, nil) }, rt.DecoderInfo{
			Layout: rt.KVPerLayer, Past: lPast, Present: lPresent, Layers: 2, KVHeads: 2, HeadDim: 4, CacheDType: dtype.Float32,
			AttentionMask: true, PositionIDs: true, Output: "logits", Logits: true, Vocab: 32}},
		{"llama tiny fp16", func(t *testing.T) *rt.Session {
			return llamaTiny(t, func(c *models.LlamaConfig) { c.DType = dtype.Float16 })
		}, rt.DecoderInfo{
			Layout: rt.KVPerLayer, Past: lPast, Present: lPresent, Layers: 2, KVHeads: 2, HeadDim: 4, CacheDType: dtype.Float16,
			AttentionMask: true, PositionIDs: true, Output: "logits", Logits: true, Vocab: 32}},
		{"gpt2 tiny", func(t *testing.T) *rt.Session { return gpt2Tiny(t) }, rt.DecoderInfo{
			Layout: rt.KVPerLayer, Past: lPast, Present: lPresent, Layers: 2, KVHeads: 4, HeadDim: 4, CacheDType: dtype.Float32,
			AttentionMask: true, Output: "logits", Logits: true, Vocab: 32}},
		{"real tiny-llama-genai-fp16", func(t *testing.T) *rt.Session {
			s, err := rt.NewSession(sharedModel(t, "tiny-llama-genai-fp16/model.onnx"), rt.WithIntraOpThreads(1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}, rt.DecoderInfo{
			Layout: rt.KVPerLayer, Past: lPast, Present: lPresent, Layers: 2, KVHeads: 1, HeadDim: 16, CacheDType: dtype.Float16,
			AttentionMask: true, PositionIDs: true, Output: "logits", Logits: true, Vocab: 32000}},
		{"real gpt2-past-torch16", func(t *testing.T) *rt.Session {
			s, err := rt.NewSession(sharedModel(t, "gpt2-past-torch16/model.onnx"), rt.WithIntraOpThreads(1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}, rt.DecoderInfo{
			Layout: rt.KVStacked, Past: sPast, Present: sPresent, Layers: 12, KVHeads: 2, HeadDim: 2, CacheDType: dtype.Float32,
			StepTokens: 1, Output: "last_state", Vocab: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := newGenerator(t, tc.session(t)).Info()
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("unexpected info:\ngot  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestNewGeneratorErrors(t *testing.T) {
	c := models.LlamaTiny()
	c.NoCache = true
	m, err := models.Llama(c)
	s := modelSession(t, m, err)
	_, err = rt.NewGenerator(s)
	if !errors.Is(err, rt.ErrNoKVCache) {
		t.Fatalf("got error %v, want one wrapping ErrNoKVCache", err)
	}
	if !strings.Contains(err.Error(), "input_ids") {
		t.Errorf("error %q does not list the model's inputs", err)
	}
	// A model with past_key_values but a missing present output.
	m, err = models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	out := m.Graph().Output
	for i, v := range out {
		if v.GetName() == "present.1.value" {
			m.Graph().Output = append(out[:i:i], out[i+1:]...)
			break
		}
	}
	_, err = rt.NewGenerator(modelSession(t, m, nil))
	if err == nil || !strings.Contains(err.Error(), `"present.1.value"`) {
		t.Errorf("got error %v, want one naming the missing present.1.value", err)
	}
}

// uncachedGreedy generates n tokens greedily without a KV cache: every step
// runs the whole sequence so far with an empty past, and chooses from the
// last position's logits. It returns the tokens and each step's logits.
func uncachedGreedy(t *testing.T, s *rt.Session, prompt []int64, n int) ([]int64, [][]float32) {
	t.Helper()
	info := newGenerator(t, s).Info()
	seq := slices.Clone(prompt)
	var toks []int64
	var logits [][]float32
	for range n {
		l := int64(len(seq))
		in := map[string]*rt.Tensor{"input_ids": must(rt.NewInt64([]int64{1, l}, slices.Clone(seq)))}
		if info.AttentionMask {
			ones := make([]int64, l)
			for i := range ones {
				ones[i] = 1
			}
			in["attention_mask"] = must(rt.NewInt64([]int64{1, l}, ones))
		}
		if info.PositionIDs {
			pos := make([]int64, l)
			for i := range pos {
				pos[i] = int64(i)
			}
			in["position_ids"] = must(rt.NewInt64([]int64{1, l}, pos))
		}
		for _, name := range info.Past {
			in[name] = must(rt.Zeros(info.CacheDType, []int64{1, int64(info.KVHeads), 0, int64(info.HeadDim)}))
		}
		out, err := s.Run(in, []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		all := out["logits"].ToFloat32()
		row := all[len(all)-info.Vocab:]
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		toks = append(toks, int64(best))
		logits = append(logits, row)
		seq = append(seq, int64(best))
	}
	return toks, logits
}

// cachedGreedy generates n tokens with the Generator and records each
// step's logits.
func cachedGreedy(t *testing.T, g *rt.Generator, prompt []int64, n int) ([]int64, [][]float32) {
	t.Helper()
	var logits [][]float32
	toks, err := g.Generate(context.Background(), prompt, rt.GenerateOptions{
		MaxNewTokens: n,
		OnToken: func(tok rt.Token) error {
			logits = append(logits, slices.Clone(tok.Logits))
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return toks, logits
}

// maxDiff returns the largest absolute difference between a and b: +Inf
// where the lengths differ or a value is NaN.
func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		e := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = max(d, e)
	}
	return d
}

// TestMaxDiffSeesNaN: a NaN, on either side or both, is no match.
func TestMaxDiffSeesNaN(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range [][2][]float32{{{1, nan}, {1, 2}}, {{1, 2}, {1, nan}}, {{nan}, {nan}}} {
		if d := maxDiff(c[0], c[1]); !math.IsInf(d, 1) {
			t.Errorf("maxDiff(%v, %v) = %v, want +Inf", c[0], c[1], d)
		}
	}
	if d := maxDiff([]float32{1, 2}, []float32{1, 2.5}); d != 0.5 {
		t.Errorf("maxDiff = %v, want 0.5", d)
	}
}

// TestGenerateCachedMatchesUncached holds generation with the KV cache to
// generation that reruns the whole sequence every step: the same tokens,
// and the same logits at every step to 1e-5.
func TestGenerateCachedMatchesUncached(t *testing.T) {
	tests := []struct {
		name    string
		session func(t *testing.T) *rt.Session
		prompt  []int64
	}{
		{"llama tiny", func(t *testing.T) *rt.Session { return llamaTiny(t, nil) }, []int64{1, 5, 9, 30, 2}},
		{"llama tiny, one-token prompt", func(t *testing.T) *rt.Session { return llamaTiny(t, nil) }, []int64{7}},
		{"llama tiny, multi-head KV", func(t *testing.T) *rt.Session {
			return llamaTiny(t, func(c *models.LlamaConfig) { c.KVHeads = 4; c.Layers = 3; c.Seed = 7 })
		}, []int64{3, 1, 4, 1, 5, 9, 2, 6}},
		{"gpt2 tiny", func(t *testing.T) *rt.Session { return gpt2Tiny(t) }, []int64{1, 5, 9, 30, 2}},
	}
	const n = 12
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.session(t)
			got, gotLogits := cachedGreedy(t, newGenerator(t, s), tc.prompt, n)
			want, wantLogits := uncachedGreedy(t, s, tc.prompt, n)
			if !slices.Equal(got, want) {
				t.Fatalf("cached tokens %v, uncached %v", got, want)
			}
			if distinct := len(slices.Compact(slices.Sorted(slices.Values(got)))); distinct < 3 {
				t.Errorf("greedy tokens %v take only %d values; the test would not notice a wrong cache", got, distinct)
			}
			for i := range want {
				if d := maxDiff(gotLogits[i], wantLogits[i]); d > 1e-5 {
					t.Errorf("step %d: logits differ by %g, want at most 1e-5", i, d)
				}
			}
		})
	}
}

// TestGenerateBatchLeftPadding generates for prompts of different lengths
// in one batch, left-padded, and compares each row with its prompt alone.
func TestGenerateBatchLeftPadding(t *testing.T) {
	s := llamaTiny(t, nil)
	g := newGenerator(t, s)
	prompts := [][]int64{{1, 5, 9, 30, 2}, {7}, {4, 4, 8}}
	const n = 8
	logits := make([][][]float32, len(prompts))
	batch, err := g.GenerateBatch(context.Background(), prompts, rt.GenerateOptions{
		MaxNewTokens: n, PadID: 31,
		OnToken: func(tok rt.Token) error {
			if tok.Step != len(logits[tok.Row]) {
				t.Errorf("row %d: got step %d, want %d", tok.Row, tok.Step, len(logits[tok.Row]))
			}
			logits[tok.Row] = append(logits[tok.Row], slices.Clone(tok.Logits))
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prompts {
		want, wantLogits := cachedGreedy(t, g, p, n)
		if !slices.Equal(batch[i], want) {
			t.Errorf("row %d: batched %v, alone %v", i, batch[i], want)
			continue
		}
		for k := range want {
			if d := maxDiff(logits[i][k], wantLogits[k]); d > 1e-5 {
				t.Errorf("row %d step %d: logits differ by %g from the prompt alone", i, k, d)
			}
		}
	}
}

// TestGenerateTinyLlamaFP16 generates from the real float16 model with its
// fused attention: the requested number of tokens, the same every time,
// and the same as without the cache.
func TestGenerateTinyLlamaFP16(t *testing.T) {
	requireORT(t)
	s, err := rt.NewSession(sharedModel(t, "tiny-llama-genai-fp16/model.onnx"), rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g := newGenerator(t, s)
	prompt := []int64{1, 450, 4996, 17354, 1701}
	const n = 16
	first, _ := cachedGreedy(t, g, prompt, n)
	if len(first) != n {
		t.Fatalf("got %d tokens, want %d", len(first), n)
	}
	again, _ := cachedGreedy(t, g, prompt, n)
	if !slices.Equal(first, again) {
		t.Errorf("two greedy runs differ: %v and %v", first, again)
	}
	uncached, _ := uncachedGreedy(t, s, prompt, n)
	if !slices.Equal(first, uncached) {
		t.Errorf("cached tokens %v, uncached %v", first, uncached)
	}
	// Feeding the prompt one token per run fills the same cache.
	oneByOne, err := g.Generate(context.Background(), prompt, rt.GenerateOptions{MaxNewTokens: n, TokensPerRun: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, oneByOne) {
		t.Errorf("prompt in one run gave %v, one token per run %v", first, oneByOne)
	}
	if _, err := g.Generate(context.Background(), prompt, rt.GenerateOptions{MaxNewTokens: n, TokensPerRun: 2}); err == nil {
		t.Error("2 tokens per run for a 5-token prompt: got no error")
	}
	// Sampling with a seed is repeatable too.
	opts := rt.GenerateOptions{MaxNewTokens: n, Temperature: 0.8, TopK: 50, TopP: 0.95, Seed: 3}
	a, err := g.Generate(context.Background(), prompt, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Generate(context.Background(), prompt, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != n || !slices.Equal(a, b) {
		t.Errorf("seeded sampling gave %v, then %v", a, b)
	}
}

// TestSequenceGPT2PastStacked steps the real GPT-2 export, whose cache is
// stacked past_{i} and which takes one token per run and has no LM head,
// and holds each step's hidden state to runs that feed the cache by hand.
func TestSequenceGPT2PastStacked(t *testing.T) {
	requireORT(t)
	s, err := rt.NewSession(sharedModel(t, "gpt2-past-torch16/model.onnx"), rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g := newGenerator(t, s)
	if _, err := g.Generate(context.Background(), []int64{1}, rt.GenerateOptions{}); err == nil || !strings.Contains(err.Error(), "no logits output") {
		t.Errorf("Generate on a model without logits: got error %v", err)
	}

	ids := [][]int64{{5, 17, 3, 19, 12, 7}, {8, 8, 1, 0, 15, 3}}
	// By hand: one token per run, present fed back as past.
	want := make([][][]float32, len(ids))
	for r, row := range ids {
		past := map[string]*rt.Tensor{}
		for i := range 12 {
			past[fmt.Sprintf("past_%d", i)] = must(rt.Zeros(dtype.Float32, []int64{2, 1, 2, 0, 2}))
		}
		for _, id := range row {
			in := map[string]*rt.Tensor{"input_ids": must(rt.NewInt64([]int64{1, 1}, []int64{id}))}
			for k, v := range past {
				in[k] = v
			}
			out, err := s.Run(in, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 12 {
				past[fmt.Sprintf("past_%d", i)] = out[fmt.Sprintf("present_%d", i)]
			}
			want[r] = append(want[r], out["last_state"].Float32())
		}
	}

	// A Sequence of both rows, fed the first three tokens at once (run
	// one by one inside) and then one at a time.
	q, err := g.NewSequence(2, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, err := q.Feed(ctx, []int64{5, 17, 3, 8, 8, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.Shape(), []int64{2, 3, 4}) {
		t.Fatalf("prefill output %v, want float32[2 3 4]", out)
	}
	check := func(step int, got []float32, r, k int) {
		t.Helper()
		if d := maxDiff(got, want[r][k]); d > 1e-6 {
			t.Errorf("step %d row %d token %d: last_state %v, by hand %v", step, r, k, got, want[r][k])
		}
	}
	for r := range 2 {
		for k := range 3 {
			check(0, out.Float32()[(r*3+k)*4:(r*3+k+1)*4], r, k)
		}
	}
	for k := 3; k < 6; k++ {
		out, err = q.Feed(ctx, []int64{ids[0][k], ids[1][k]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for r := range 2 {
			check(k, out.Float32()[r*4:(r+1)*4], r, k)
		}
	}
	if q.Len() != 6 {
		t.Errorf("sequence length %d, want 6", q.Len())
	}
	// The cache matters: the last token alone gives another state.
	q2, _ := g.NewSequence(1, 0)
	alone, err := q2.Feed(ctx, []int64{ids[0][5]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if maxDiff(alone.Float32(), want[0][5]) < 1e-4 {
		t.Errorf("the last token alone gives the state it gives after the others; the cache is not being used")
	}
	if _, err := q2.Feed(ctx, []int64{1}, []int64{0}); err == nil || !strings.Contains(err.Error(), "no attention_mask") {
		t.Errorf("padding on a model without attention_mask: got error %v", err)
	}
}

// TestSequenceGrows feeds a sequence past its capacity and compares with
// one that had room from the start.
func TestSequenceGrows(t *testing.T) {
	s := llamaTiny(t, nil)
	g := newGenerator(t, s)
	ctx := context.Background()
	small, err := g.NewSequence(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	big, err := g.NewSequence(1, 64)
	if err != nil {
		t.Fatal(err)
	}
	for i, chunk := range [][]int64{{1, 2, 3}, {4}, {5, 6, 7, 8, 9}, {10}} {
		a, err := small.Feed(ctx, chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(a.Float32())
		b, err := big.Feed(ctx, chunk, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(got, b.Float32()); d > 1e-6 {
			t.Errorf("chunk %d: outputs differ by %g after growing", i, d)
		}
	}
}

func TestGenerateOptionsErrors(t *testing.T) {
	s := llamaTiny(t, nil)
	g := newGenerator(t, s)
	tests := []struct {
		reason  string
		prompts [][]int64
		opts    rt.GenerateOptions
		want    string
	}{
		{"negative max", [][]int64{{1}}, rt.GenerateOptions{MaxNewTokens: -1}, "MaxNewTokens must not be negative"},
		{"negative temperature", [][]int64{{1}}, rt.GenerateOptions{Temperature: -1}, "Temperature"},
		{"NaN temperature", [][]int64{{1}}, rt.GenerateOptions{Temperature: math.NaN()}, "Temperature"},
		{"negative top-k", [][]int64{{1}}, rt.GenerateOptions{Temperature: 1, TopK: -2}, "TopK must not be negative"},
		{"top-p above 1", [][]int64{{1}}, rt.GenerateOptions{Temperature: 1, TopP: 1.5}, "TopP must be in [0, 1]"},
		{"top-k when greedy", [][]int64{{1}}, rt.GenerateOptions{TopK: 5}, "set Temperature > 0"},
		{"negative penalty", [][]int64{{1}}, rt.GenerateOptions{RepetitionPenalty: -1}, "RepetitionPenalty"},
		{"no prompts", nil, rt.GenerateOptions{}, "no prompts"},
		{"empty prompt", [][]int64{{1}, {}}, rt.GenerateOptions{}, "prompt 1 is empty"},
		{"id outside the vocabulary", [][]int64{{1, 32}}, rt.GenerateOptions{}, "token id 32 at 1 is outside the vocabulary of 32"},
		{"pad outside the vocabulary", [][]int64{{1, 2}, {1}}, rt.GenerateOptions{PadID: 99}, "token id 99"},
	}
	for _, tc := range tests {
		out, err := g.GenerateBatch(context.Background(), tc.prompts, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got error %v, want one containing %q", tc.reason, err, tc.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "runtime: ") {
			t.Errorf("%s: error %q does not start with \"runtime: \"", tc.reason, err)
		}
		if len(out) != 0 {
			t.Errorf("%s: got tokens %v with the error", tc.reason, out)
		}
	}
}

func TestGenerateStops(t *testing.T) {
	s := llamaTiny(t, nil)
	g := newGenerator(t, s)
	ctx := context.Background()
	prompt := []int64{1, 5, 9, 30, 2}
	all, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 10 {
		t.Fatalf("got %d tokens, want 10", len(all))
	}
	// EOS: the first token that is new to the output ends it there.
	at := 3
	for slices.Contains(all[:at], all[at]) {
		at++
	}
	got, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: 10, EOS: []int64{all[at]}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, all[:at+1]) {
		t.Errorf("with EOS %d: got %v, want %v", all[at], got, all[:at+1])
	}
	// OnToken stops it with ErrStopGeneration, or fails it with another
	// error.
	stopAt := func(n int, err error) func(rt.Token) error {
		return func(tok rt.Token) error {
			if tok.Step == n-1 {
				return err
			}
			return nil
		}
	}
	got, err = g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: 10, OnToken: stopAt(4, rt.ErrStopGeneration)})
	if err != nil || !slices.Equal(got, all[:4]) {
		t.Errorf("stopped after 4: got %v, %v; want %v, nil", got, err, all[:4])
	}
	boom := errors.New("boom")
	got, err = g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: 10, OnToken: stopAt(2, boom)})
	if !errors.Is(err, boom) || !slices.Equal(got, all[:2]) {
		t.Errorf("failed after 2: got %v, %v; want %v, boom", got, err, all[:2])
	}
	// A huge MaxNewTokens allocates the cache as it goes, not up front
	// (issue 16 M4: 1e9 tokens asked 32 GB before the first step).
	got, err = g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: 1 << 30, OnToken: stopAt(4, rt.ErrStopGeneration)})
	if err != nil || !slices.Equal(got, all[:4]) {
		t.Errorf("MaxNewTokens 2^30, stopped after 4: got %v, %v; want %v, nil", got, err, all[:4])
	}
	// A cancelled context stops it between steps.
	cctx, cancel := context.WithCancel(ctx)
	got, err = g.Generate(cctx, prompt, rt.GenerateOptions{MaxNewTokens: 10, OnToken: func(tok rt.Token) error {
		if tok.Step == 1 {
			cancel()
		}
		return nil
	}})
	if !errors.Is(err, context.Canceled) || !slices.Equal(got, all[:2]) {
		t.Errorf("cancelled after 2: got %v, %v; want %v, context.Canceled", got, err, all[:2])
	}
}

func TestGenerateSampling(t *testing.T) {
	s := llamaTiny(t, nil)
	g := newGenerator(t, s)
	ctx := context.Background()
	prompt := []int64{1, 5, 9}
	const n = 16
	greedy, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: n})
	if err != nil {
		t.Fatal(err)
	}
	gen := func(o rt.GenerateOptions) []int64 {
		t.Helper()
		o.MaxNewTokens = n
		out, err := g.Generate(ctx, prompt, o)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := gen(rt.GenerateOptions{Temperature: 1, TopK: 1, Seed: 5}); !slices.Equal(got, greedy) {
		t.Errorf("top-k 1 sampling %v, greedy %v", got, greedy)
	}
	if got := gen(rt.GenerateOptions{Temperature: 1, TopP: 1e-9, Seed: 5}); !slices.Equal(got, greedy) {
		t.Errorf("top-p 1e-9 sampling %v, greedy %v", got, greedy)
	}
	if got := gen(rt.GenerateOptions{Temperature: 1e-4, Seed: 5}); !slices.Equal(got, greedy) {
		t.Errorf("temperature 1e-4 sampling %v, greedy %v", got, greedy)
	}
	a := gen(rt.GenerateOptions{Temperature: 1.5, Seed: 1})
	if b := gen(rt.GenerateOptions{Temperature: 1.5, Seed: 1}); !slices.Equal(a, b) {
		t.Errorf("seed 1 gave %v, then %v", a, b)
	}
	differ := 0
	for seed := uint64(2); seed < 6; seed++ {
		if !slices.Equal(a, gen(rt.GenerateOptions{Temperature: 1.5, Seed: seed})) {
			differ++
		}
	}
	if differ == 0 {
		t.Errorf("seeds 1 to 5 all gave %v", a)
	}
	// With a repetition penalty, each token is the argmax of the logits
	// after HuggingFace's penalty over the prompt and the tokens before.
	const penalty = 3
	history := slices.Clone(prompt)
	var steps [][]float32
	pen := gen(rt.GenerateOptions{RepetitionPenalty: penalty, OnToken: func(tok rt.Token) error {
		steps = append(steps, slices.Clone(tok.Logits))
		return nil
	}})
	for i, id := range pen {
		scores := steps[i]
		for _, h := range slices.Compact(slices.Sorted(slices.Values(history))) {
			if scores[h] < 0 {
				scores[h] *= penalty
			} else {
				scores[h] /= penalty
			}
		}
		best := 0
		for j, v := range scores {
			if v > scores[best] {
				best = j
			}
		}
		if int64(best) != id {
			t.Errorf("penalty %d, step %d: got token %d, want %d", penalty, i, id, best)
		}
		history = append(history, id)
	}
	if slices.Equal(pen, greedy) {
		t.Errorf("penalty %d changed nothing: %v", penalty, pen)
	}
}

// TestGenerateFeeds runs a model with an input that generation does not
// know: a bias added to the logits, which the caller feeds.
func TestGenerateFeeds(t *testing.T) {
	c := models.LlamaTiny()
	c.InitStd = genStd
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Graph().Node {
		for i, out := range n.Output {
			if out == "logits" {
				n.Output[i] = "logits_unbiased"
			}
		}
	}
	m.Graph().Node = append(m.Graph().Node, node("Add", []string{"logits_unbiased", "bias"}, []string{"logits"}))
	m.AddInput(graph.TensorInfo("bias", dtype.Float32, []int64{int64(c.VocabSize)}))
	s := modelSession(t, m, nil)
	g := newGenerator(t, s)
	ctx := context.Background()
	prompt := []int64{1, 5, 9}

	_, err = g.Generate(ctx, prompt, rt.GenerateOptions{})
	if err == nil || !strings.Contains(err.Error(), "bias float32[32]") || !strings.Contains(err.Error(), "SetFeeds") {
		t.Errorf("without the feed: got error %v", err)
	}
	bias := make([]float32, c.VocabSize)
	zero, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: 6, Feeds: map[string]*rt.Tensor{"bias": must(rt.NewFloat32([]int64{32}, bias))}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := uncachedGreedy(t, llamaTiny(t, nil), prompt, 6)
	if !slices.Equal(zero, want) {
		t.Errorf("zero bias: got %v, want the base model's %v", zero, want)
	}
	bias[7] = 1e4
	sev, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: 6, Feeds: map[string]*rt.Tensor{"bias": must(rt.NewFloat32([]int64{32}, bias))}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sev, []int64{7, 7, 7, 7, 7, 7}) {
		t.Errorf("bias on token 7: got %v", sev)
	}
	for _, tc := range []struct {
		feeds map[string]*rt.Tensor
		want  string
	}{
		{map[string]*rt.Tensor{"nope": must(rt.NewFloat32([]int64{32}, bias))}, `feed "nope" is not an input`},
		{map[string]*rt.Tensor{"input_ids": must(rt.NewInt64([]int64{1, 1}, []int64{1}))}, `feed "input_ids" is an input that generation feeds itself`},
		{map[string]*rt.Tensor{"bias": must(rt.NewFloat32([]int64{2}, []float32{1, 2}))}, `"bias": shape [2]`},
	} {
		if _, err := g.Generate(ctx, prompt, rt.GenerateOptions{Feeds: tc.feeds}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got error %v, want one containing %q", err, tc.want)
		}
	}
}

// TestGenerateDynamicVocab runs a model that leaves the logits' vocabulary
// axis dynamic: the first step learns it, and the tokens are those of the
// same model with the axis declared.
func TestGenerateDynamicVocab(t *testing.T) {
	c := models.LlamaTiny()
	c.InitStd = genStd
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range m.Graph().Output {
		if v.GetName() == "logits" {
			dims := v.GetType().GetTensorType().GetShape().GetDim()
			dims[2].Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "vocab"}
		}
	}
	s := modelSession(t, m, nil)
	g := newGenerator(t, s)
	if v := g.Info().Vocab; v != 0 {
		t.Fatalf("vocabulary %d before a step, want 0", v)
	}
	prompt := []int64{1, 5, 9, 30, 2}
	got, gotLogits := cachedGreedy(t, g, prompt, 8)
	if v := g.Info().Vocab; v != 32 {
		t.Errorf("vocabulary %d after a step, want 32", v)
	}
	want, wantLogits := cachedGreedy(t, newGenerator(t, llamaTiny(t, nil)), prompt, 8)
	if !slices.Equal(got, want) {
		t.Fatalf("dynamic vocabulary: tokens %v, declared: %v", got, want)
	}
	for i := range want {
		if d := maxDiff(gotLogits[i], wantLogits[i]); d > 1e-5 {
			t.Errorf("step %d: logits differ by %g", i, d)
		}
	}
	// The learned size now checks token ids.
	if _, err := g.Generate(context.Background(), []int64{40}, rt.GenerateOptions{}); err == nil || !strings.Contains(err.Error(), "outside the vocabulary of 32") {
		t.Errorf("id 40: got error %v", err)
	}
}
