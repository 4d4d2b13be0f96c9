package main

import (
	gocontext "context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/tokenizer"
)

// tinyLlama returns the real fp16 tiny LLaMA and its tokenizer.
func tinyLlama(t *testing.T) (model, tokenizer string) {
	t.Helper()
	model = sharedModel(t, "tiny-llama-genai-fp16")
	return model, filepath.Join(filepath.Dir(model), "tokenizer.json")
}

var statsLine = regexp.MustCompile(`^peftonnx: stats: prompt (\d+) tokens; generated (\d+) tokens in \S+ \([0-9.]+ tokens/s\); first token after \S+(, then [0-9.]+ tokens/s)?\n$`)

// generate runs the generate command and checks that it succeeded with the
// stats line on stderr; it returns stdout and the counts of prompt and
// generated tokens.
func generate(t *testing.T, args ...string) (stdout, prompt, generated string) {
	t.Helper()
	out, errOut, code := cli(t, append([]string{"generate", "--stats", "--threads", "1"}, args...)...)
	if code != 0 {
		t.Fatalf("generate %q: exit status %d, stderr %q", args, code, errOut)
	}
	m := statsLine.FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("generate %q: stderr %q is not the stats line", args, errOut)
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") < 1 {
		t.Errorf("generate %q: stdout %q does not end in a newline", args, out)
	}
	return out, m[1], m[2]
}

// TestGenerateTinyLlama generates from the real model. Its weights are
// random, so the text is gibberish; what is checked is the token count, that
// runs repeat, and that the text is the API's greedy tokens decoded.
func TestGenerateTinyLlama(t *testing.T) {
	needORT(t)
	model, tok := tinyLlama(t)
	args := []string{model, "--tokenizer", tok, "--prompt", "Once upon a time", "--max-new-tokens", "12", "--ignore-eos"}
	first, prompt, n := generate(t, args...)
	if prompt != "5" || n != "12" {
		t.Errorf("got prompt %s and %s generated tokens, want 5 and 12", prompt, n)
	}
	if strings.TrimSpace(first) == "" {
		t.Errorf("got no text")
	}
	if again, _, _ := generate(t, args...); again != first {
		t.Errorf("greedy runs differ: %q then %q", first, again)
	}

	// The same through the Go API.
	tk, err := tokenizer.Load(tok)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tk.Encode("Once upon a time", true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ortrt.NewSession(model, ortrt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := ortrt.NewGenerator(s)
	if err != nil {
		t.Fatal(err)
	}
	want, err := g.Generate(gocontext.Background(), ids, ortrt.GenerateOptions{MaxNewTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	text, err := tk.Decode(want, true)
	if err != nil {
		t.Fatal(err)
	}
	if first != text+"\n" {
		t.Errorf("got stdout %q, want the API's tokens %v decoded, %q", first, want, text+"\n")
	}

	// Sampling repeats with a seed and changes with it.
	sample := append(args[:len(args):len(args)], "--temperature", "0.9", "--top-k", "100", "--top-p", "0.95")
	a, _, n := generate(t, append(sample, "--seed", "1")...)
	if n != "12" {
		t.Errorf("sampling: got %s tokens, want 12", n)
	}
	if b, _, _ := generate(t, append(sample, "--seed", "1")...); a != b {
		t.Errorf("seed 1 gave %q, then %q", a, b)
	}
	if c, _, _ := generate(t, append(sample, "--seed", "2")...); a == c {
		t.Errorf("seeds 1 and 2 both gave %q", a)
	}
	if a == first {
		t.Errorf("sampling gave the greedy text %q", a)
	}
}

// TestGenerateAdapter applies a LoRA adapter in memory: with B zero the
// text is the base model's; with B large it changes.
func TestGenerateAdapter(t *testing.T) {
	needORT(t)
	model, tok := tinyLlama(t)
	args := []string{model, "--tokenizer", tok, "--prompt", "Once upon a time", "--max-new-tokens", "10", "--ignore-eos"}
	base, _, _ := generate(t, args...)

	write := func(scale float32) string {
		cfg := adapter.DefaultLoRAConfig()
		cfg.R, cfg.Alpha = 2, 2
		cfg.TargetModules = []string{".*q_proj", ".*o_proj"}
		ad := adapter.NewLoRA(cfg)
		for _, mod := range []string{"model.layers.0.attn.q_proj", "model.layers.1.attn.o_proj"} {
			a := make([]float32, 16*2)
			b := make([]float32, 2*16)
			for i := range a {
				a[i] = float32(i%5) - 2
				b[i] = scale * (float32(i%3) - 1)
			}
			ad.Weights[mod] = adapter.LoRAWeights{A: adapter.NewTensor([]int64{16, 2}, a), B: adapter.NewTensor([]int64{2, 16}, b)}
		}
		dir := filepath.Join(t.TempDir(), "adapter")
		if err := adapter.Save(dir, ad); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	if got, _, _ := generate(t, append(args, "--adapter", write(0))...); got != base {
		t.Errorf("an adapter with B = 0 changed the text: %q, base %q", got, base)
	}
	changed, _, n := generate(t, append(args, "--adapter", write(2))...)
	if changed == base {
		t.Errorf("an adapter with large B left the text as the base's: %q", base)
	}
	if n != "10" {
		t.Errorf("with the adapter: got %s tokens, want 10", n)
	}
	if again, _, _ := generate(t, append(args, "--adapter", write(2))...); again != changed {
		t.Errorf("adapted runs differ: %q then %q", changed, again)
	}

	// A model whose LoRA factors are inputs (inject --as-inputs) is fed
	// the adapter every step, and generates what the base model with the
	// adapter applied does.
	asInputs := filepath.Join(t.TempDir(), "as-inputs.onnx")
	if _, errOut, code := cli(t, "inject", model, "-o", asInputs, "--target", ".*q_proj", "--target", ".*o_proj", "--as-inputs"); code != 0 {
		t.Fatalf("inject --as-inputs: status %d, stderr %q", code, errOut)
	}
	inArgs := append([]string{asInputs}, args[1:]...)
	if got, _, _ := generate(t, inArgs...); got != base {
		t.Errorf("as-inputs model fed nothing: %q, base %q", got, base)
	}
	if got, _, _ := generate(t, append(inArgs, "--adapter", write(2))...); got != changed {
		t.Errorf("as-inputs model fed the adapter: %q, base with the adapter applied %q", got, changed)
	}
}

func TestGenerateErrors(t *testing.T) {
	model, tok := tinyLlama(t)
	dir := t.TempDir()

	// A decoder with a KV cache but a vocabulary of 32, smaller than the
	// tokenizer's 32000.
	small := filepath.Join(dir, "llama-tiny.onnx")
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(small, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	distilbert := filepath.Join(sharedModels, "distilbert-optimum", "model.onnx")
	gpt2Past := filepath.Join(sharedModels, "gpt2-past-torch16", "model.onnx")
	// Tokenizer files that the tokenizer before package tokenizer answered
	// with Go runtime text or accepted (issue 16, E1 and E2).
	unigram := filepath.Join(dir, "unigram.json")
	badRegex := filepath.Join(dir, "bad-regex.json")
	for path, text := range map[string]string{
		unigram:  `{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}`,
		badRegex: `{"normalizer": {"type": "Replace", "pattern": {"Regex": "(a"}, "content": ""}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}`,
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		reason string
		args   []string
		ort    bool // needs ONNX Runtime
		code   int
		want   []string
	}{
		{"no model", []string{"--tokenizer", tok, "--prompt", "hi"}, false, 2, []string{"want one MODEL"}},
		{"no tokenizer", []string{model, "--prompt", "hi"}, false, 2, []string{"--tokenizer is required"}},
		{"no prompt", []string{model, "--tokenizer", tok}, false, 2, []string{"--prompt is required"}},
		{"zero tokens", []string{model, "--tokenizer", tok, "--prompt", "hi", "--max-new-tokens", "0"}, false, 2, []string{"--max-new-tokens must be positive"}},
		{"negative temperature", []string{model, "--tokenizer", tok, "--prompt", "hi", "--temperature", "-1"}, false, 2, []string{"--temperature"}},
		{"top-p 0", []string{model, "--tokenizer", tok, "--prompt", "hi", "--top-p", "0"}, false, 2, []string{"--top-p must be in (0, 1]"}},
		{"top-k when greedy", []string{model, "--tokenizer", tok, "--prompt", "hi", "--top-k", "5", "--temperature", "0"}, false, 2, []string{"--temperature above 0"}},
		{"bad penalty", []string{model, "--tokenizer", tok, "--prompt", "hi", "--repetition-penalty", "0"}, false, 2, []string{"--repetition-penalty"}},
		{"missing tokenizer", []string{model, "--tokenizer", filepath.Join(dir, "nope.json"), "--prompt", "hi"}, false, 1, []string{"tokenizer: " + filepath.Join(dir, "nope.json") + ": no such file"}},
		{"missing model", []string{filepath.Join(dir, "nope.onnx"), "--tokenizer", tok, "--prompt", "hi"}, false, 1, []string{"nope.onnx"}},
		{"unsupported tokenizer", []string{model, "--tokenizer", unigram, "--prompt", "hi"}, false, 1, []string{"tokenizer: " + unigram + `: unsupported model type "Unigram"`}},
		{"invalid tokenizer regex", []string{model, "--tokenizer", badRegex, "--prompt", "hi"}, false, 1, []string{"tokenizer: " + badRegex + `: normalizer.pattern.Regex: invalid regex "(a"`}},
		{"no past_key_values", []string{distilbert, "--tokenizer", tok, "--prompt", "hi"}, true, 1,
			[]string{"generate: " + distilbert + " has no past_key_values inputs"}},
		{"no logits", []string{gpt2Past, "--tokenizer", tok, "--prompt", "hi"}, true, 1,
			[]string{"generate: " + gpt2Past + " has no logits output"}},
		{"vocabulary too small", []string{small, "--tokenizer", tok, "--prompt", "hi"}, true, 1,
			[]string{"generate: the prompt's token 1, id ", "is outside the vocabulary of 32 of " + small, "does not belong to the model"}},
		{"missing adapter", []string{model, "--tokenizer", tok, "--prompt", "hi", "--adapter", filepath.Join(dir, "no-adapter")}, false, 1, []string{"no-adapter"}},
	}
	for _, tc := range tests {
		if tc.ort {
			needORT(t)
		}
		out, errOut, code := cli(t, append([]string{"generate"}, tc.args...)...)
		wantError(t, tc.reason, out, errOut, code, tc.code, tc.want...)
	}
}

func TestGenerateHelp(t *testing.T) {
	out, errOut, code := cli(t, "generate", "-h")
	if code != 0 || errOut != "" {
		t.Fatalf("got status %d, stderr %q", code, errOut)
	}
	for _, flag := range []string{"-tokenizer", "-prompt", "-adapter", "-max-new-tokens", "-temperature", "-top-k", "-top-p", "-seed", "-device"} {
		if !strings.Contains(out, flag) {
			t.Errorf("help does not mention %s:\n%s", flag, out)
		}
	}
}

// TestTextStream streams text token by token, multi-byte characters split
// over byte tokens and a newline included, and checks that what it writes
// is the text decoded at once, with no replacement characters on the way.
func TestTextStream(t *testing.T) {
	_, tokPath := tinyLlama(t)
	tk, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	const text = "Hello world, héllo ✓ 統一\nnext line"
	ids, err := tk.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	bytes := 0
	for _, id := range ids {
		if id >= 3 && id < 3+256 { // <0x00>…<0xFF>
			bytes++
		}
	}
	if bytes < 2 {
		t.Fatalf("the text encodes to %v, with %d byte tokens; the test needs a character split over several", ids, bytes)
	}
	var out strings.Builder
	st := &textStream{tok: tk, w: &out}
	for i, id := range ids {
		if err := st.add(id); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), "\uFFFD") {
			t.Fatalf("after token %d: wrote %q", i, out.String())
		}
	}
	if err := st.finish(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), text+"\n"; got != want {
		t.Errorf("got %q want %q (ids %v)", got, want, ids)
	}
}

// TestGeneratePositions asks the real tiny LLaMA, whose rotary cache
// covers 2048 positions, for more tokens than that (issue 16, E4): an
// error naming the length, the limit and the flag before any step, not
// ONNX Runtime's RotaryEmbedding failure.
func TestGeneratePositions(t *testing.T) {
	model, tok := tinyLlama(t)
	long := strings.Repeat("once upon a time ", 700)
	for _, tc := range []struct {
		reason string
		prompt string
		maxNew string
		parts  []string
	}{
		{"too many new tokens", "Once upon a time", "5000", []string{"pass the 2048 positions", "cos_cache", "give --max-new-tokens 2043 or less"}},
		{"too long a prompt", long, "1", []string{"covers 2048 positions", "shorten the prompt"}},
	} {
		stdout, stderr, code := cli(t, "generate", model, "--tokenizer", tok, "--prompt", tc.prompt, "--max-new-tokens", tc.maxNew)
		wantError(t, tc.reason, stdout, stderr, code, 1, tc.parts...)
	}
}
