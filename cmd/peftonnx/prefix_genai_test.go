package main

import (
	gocontext "context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	feeds "github.com/peftonnx/peftonnx/feed"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
	"github.com/peftonnx/peftonnx/tokenizer"
)

// TestPrefixTrainGenerateGenAI runs "peftonnx prefix", "train" and
// "generate" on the onnxruntime-genai export, whose attention mask is
// built for the new tokens alone, with a prompt of several tokens fed in
// one run: generation with the cache gives the tokens that generation
// without it gives (the whole sequence each step, with an empty past), and
// the tokens of feeding the prompt one token per run.
func TestPrefixTrainGenerateGenAI(t *testing.T) {
	needORT(t)
	model, tokPath := tinyLlama(t)
	dir := t.TempDir()
	prefixed := filepath.Join(dir, "prefixed.onnx")
	runOK(t, "prefix", model, "-o", prefixed, "--tokens", "3")
	data := trainWriteLines(t, dir, "text.jsonl",
		`{"text":"Once upon a time there was a small model"}`, `{"text":"The quick brown fox jumps over the lazy dog"}`,
		`{"text":"Prefix tuning feeds trained keys and values"}`, `{"text":"A prompt of many tokens runs in one pass"}`)
	out := filepath.Join(dir, "adapter")
	stdout := runOK(t, "train", prefixed, "--data", data, "--tokenizer", tokPath, "--out", out, "--steps", "4", "--batch", "2", "--lr", "1e-1", "--threads", "1")
	if !strings.Contains(stdout, "trained 4 steps") {
		t.Fatalf("train: %s", stdout)
	}

	const prompt, n = "Once upon a time in a land", 8
	text, promptTokens, _ := generate(t, model, "--adapter", out, "--tokenizer", tokPath, "--prompt", prompt, "--max-new-tokens", "8", "--ignore-eos")
	if promptTokens == "1" {
		t.Fatalf("the prompt is one token; the test wants several")
	}

	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tok.Encode(prompt, true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.Open(model, session.WithAdapterFile(out), session.WithRuntime(ortrt.WithIntraOpThreads(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Prefix.WidenedMasks) != 1 || !strings.Contains(s.Prefix.WidenedMasks[0], "attn_mask_reformat/input_ids_subgraph/Expand") {
		t.Errorf("widened masks: got %q, want the input_ids subgraph's Expand", s.Prefix.WidenedMasks)
	}
	g, err := ortrt.NewGenerator(s.Session)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := g.Generate(gocontext.Background(), ids, ortrt.GenerateOptions{MaxNewTokens: n})
	if err != nil {
		t.Fatal(err)
	}
	oneByOne, err := g.Generate(gocontext.Background(), ids, ortrt.GenerateOptions{MaxNewTokens: n, TokensPerRun: 1})
	if err != nil {
		t.Fatal(err)
	}
	uncached := uncachedTokens(t, s.Session, ids, n)
	if !slices.Equal(cached, uncached) || !slices.Equal(oneByOne, uncached) {
		t.Errorf("prompt in one run %v, one token per run %v, without a cache %v", cached, oneByOne, uncached)
	}
	want, err := tok.Decode(uncached, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSuffix(text, "\n"); got != want {
		t.Errorf("generate printed %q, the uncached tokens decode to %q", got, want)
	}
}

// uncachedTokens generates n tokens greedily, each step running the whole
// sequence so far with an empty past.
func uncachedTokens(t *testing.T, s *ortrt.Session, prompt []int64, n int) []int64 {
	t.Helper()
	var ins, outs []feeds.Input
	for _, v := range s.Inputs() {
		ins = append(ins, feeds.Input(v))
	}
	for _, v := range s.Outputs() {
		outs = append(outs, feeds.Input(v))
	}
	plan := feeds.Classify(ins, outs)
	seq := slices.Clone(prompt)
	var toks []int64
	for range n {
		l := len(seq)
		in := map[string]*ortrt.Tensor{}
		for _, slot := range plan.Slots() {
			if slot.Optional {
				continue
			}
			shape, err := slot.FeedShape(1, l, 0)
			if err != nil {
				t.Fatal(err)
			}
			var x *ortrt.Tensor
			switch slot.Role {
			case feeds.TokenIDs:
				x, err = ortrt.FromInt64s(slot.DType, shape, seq)
			case feeds.AttentionMask:
				x, err = ortrt.FromInt64s(slot.DType, shape, feeds.Ones(l))
			case feeds.Positions:
				x, err = ortrt.FromInt64s(slot.DType, shape, feeds.PositionIDs(1, l, 0))
			default:
				x, err = ortrt.Zeros(slot.DType, shape)
			}
			if err != nil {
				t.Fatal(err)
			}
			in[slot.Name] = x
		}
		res, err := s.Run(in, []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		logits := res["logits"].ToFloat32()
		v := len(logits) / l
		last := logits[(l-1)*v:]
		best := 0
		for j, x := range last {
			if x > last[best] {
				best = j
			}
		}
		toks = append(toks, int64(best))
		seq = append(seq, int64(best))
	}
	return toks
}
