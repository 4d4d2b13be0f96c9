package main

import (
	gocontext "context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	roles "github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/tokenizer"
)

func init() {
	register(&command{
		name: "generate",
		args: "MODEL --tokenizer tokenizer.json --prompt TEXT [--adapter DIR|FILE] [--max-new-tokens N] " +
			"[--temperature T] [--top-k K] [--top-p P] [--seed S] [--repetition-penalty R] [--ignore-eos] " +
			"[--threads N] [--device cpu|cuda] [--stats]",
		summary: "generate text with a decoder that has past_key_values",
		detail: `
The prompt is encoded with the tokenizer (its special tokens added, as
HuggingFace's tokenizer(text) does) and fed once; then the model runs one
token per step with its KV cache. The generated text, without the prompt,
is written to standard output as it comes, then a newline. Generation stops
after --max-new-tokens tokens or at the tokenizer's end-of-sequence token.

The model takes input_ids and its KV cache as past_key_values.{i}.key and
.value inputs (Optimum, onnxruntime-genai), stacked past_{i} inputs, or
another naming that peftonnx recognises (past_key_self_{i}, one past),
on every layer or some, with recurrent or convolution states
(past_conv.{i}) carried from step to step; and attention_mask,
position_ids and token_type_ids where it has them, in the integer type it
declares. Inputs other than LLaMA's usual int64 ones are named on standard
error once, with what they are fed. The prompt's token ids must be within
the model's vocabulary; the tokenizer may have more tokens than that.

Choice is greedy by default. --temperature above 0 samples from the
model's distribution at that temperature, after --top-k and --top-p, with
a random source seeded by --seed: the same seed gives the same text.
Giving --top-k or --top-p alone samples at temperature 1.

--adapter injects a LoRA adapter (a HuggingFace PEFT directory or an
.onnx_adapter file) into the model in memory before it runs, as
"peftonnx apply" would; where the model takes its LoRA factors as inputs
(inject --as-inputs) the adapter is fed to those inputs instead. --stats
writes token counts and speed to standard error.`,
		run: runGenerate,
	})
}

func runGenerate(cx *context, args []string) error {
	fs := cx.flags()
	tokPath := fs.String("tokenizer", "", "HuggingFace `tokenizer.json` (required)")
	prompt := fs.String("prompt", "", "the `TEXT` to continue (required)")
	adapterPath := addAdapterFlag(fs, "generate with this LoRA adapter, applied in memory")
	maxNew := fs.Int("max-new-tokens", 20, "generate at most `N` tokens")
	temperature := fs.Float64("temperature", 0, "sample at temperature `T`; 0 chooses greedily")
	topK := fs.Int("top-k", 0, "sample from the `K` most likely tokens; 0 for all")
	topP := fs.Float64("top-p", 1, "sample from the most likely tokens that make up probability `P`")
	seed := fs.Uint64("seed", 0, "seed `S` of the random source for sampling")
	penalty := fs.Float64("repetition-penalty", 1, "penalize tokens already in the text by `R` (HF repetition_penalty); 1 is off")
	ignoreEOS := fs.Bool("ignore-eos", false, "do not stop at the end-of-sequence token")
	rt := addRuntimeFlags(fs)
	stats := fs.Bool("stats", false, "write token counts and tokens/s to standard error")
	model, err := cx.parseOne(args, "MODEL", "--tokenizer")
	if err != nil {
		return err
	}
	given := cx.given()
	switch {
	case !given["prompt"]:
		return cx.usagef("--prompt is required")
	case *maxNew <= 0:
		return cx.usagef("--max-new-tokens must be positive, got %d", *maxNew)
	case *temperature < 0:
		return cx.usagef("--temperature must be 0 or more, got %v", *temperature)
	case *topK < 0:
		return cx.usagef("--top-k must be 0 or more, got %d", *topK)
	case !(*topP > 0 && *topP <= 1):
		return cx.usagef("--top-p must be in (0, 1], got %v", *topP)
	case !(*penalty > 0):
		return cx.usagef("--repetition-penalty must be positive, got %v", *penalty)
	}
	if err := rt.check(cx); err != nil {
		return err
	}
	sampling := *topK > 0 || *topP < 1
	if sampling && given["temperature"] && *temperature == 0 {
		return cx.usagef("--top-k and --top-p sample: give a --temperature above 0, or leave it out for 1")
	}
	if sampling && !given["temperature"] {
		*temperature = 1
	}

	tok, err := tokenizer.Load(*tokPath)
	if err != nil {
		return err
	}
	sess, err := openAdapted(model, *adapterPath, rt.options()...)
	if err != nil {
		return err
	}
	defer sess.Close()
	gen, err := ortrt.NewGenerator(sess.Session)
	if errors.Is(err, ortrt.ErrNoKVCache) {
		return fmt.Errorf("generate: %s has no past_key_values inputs, so it cannot generate with a KV cache (inputs: %s)", model, describeInputs(sess.Inputs()))
	}
	if err != nil {
		return err
	}
	info := gen.Info()
	if !info.Logits {
		return fmt.Errorf("generate: %s has no logits output (its output %q is not logits: a model without an LM head cannot generate)", model, info.Output)
	}
	ids, err := tok.Encode(*prompt, true)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("generate: the prompt encodes to no tokens with %s", *tokPath)
	}
	// The ids fed are checked against the model's vocabulary, not the
	// tokenizer's size: onnxruntime-genai ships tokenizers with more
	// tokens than the model embeds, whose extra ids a prompt rarely uses.
	if info.Vocab > 0 {
		for i, id := range ids {
			if id >= int64(info.Vocab) {
				return fmt.Errorf("generate: the prompt's token %d, id %d, is outside the vocabulary of %d of %s: %s does not belong to the model", i, id, info.Vocab, model, *tokPath)
			}
		}
	}
	if err := checkGeneratePositions(model, len(ids), *maxNew); err != nil {
		return err
	}
	for _, d := range info.Defaults {
		fmt.Fprintf(cx.stderr, "peftonnx: note: feeding %s\n", d)
	}

	opts := ortrt.GenerateOptions{
		MaxNewTokens:      *maxNew,
		Temperature:       *temperature,
		TopK:              *topK,
		TopP:              *topP,
		Seed:              *seed,
		RepetitionPenalty: *penalty,
		PadID:             tok.PadID(),
		Feeds:             sess.Feeds,
	}
	if eos := tok.EOS(); eos >= 0 && !*ignoreEOS {
		opts.EOS = []int64{eos}
	}
	st := &textStream{tok: tok, w: cx.stdout}
	var firstToken time.Duration
	start := time.Now()
	opts.OnToken = func(t ortrt.Token) error {
		if t.Step == 0 {
			firstToken = time.Since(start)
		}
		return st.add(t.ID)
	}
	ctx, stop := signal.NotifyContext(gocontext.Background(), os.Interrupt)
	defer stop()
	out, err := gen.Generate(ctx, ids, opts)
	elapsed := time.Since(start)
	if ferr := st.finish(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if *stats {
		fmt.Fprintf(cx.stderr, "peftonnx: stats: prompt %d tokens; generated %d tokens in %s (%.1f tokens/s); first token after %s",
			len(ids), len(out), elapsed.Round(time.Microsecond), float64(len(out))/elapsed.Seconds(), firstToken.Round(time.Microsecond))
		if len(out) > 1 {
			fmt.Fprintf(cx.stderr, ", then %.1f tokens/s", float64(len(out)-1)/(elapsed-firstToken).Seconds())
		}
		fmt.Fprintln(cx.stderr)
	}
	return nil
}

// textStream writes generated text as its tokens come. It decodes the
// tokens of the current line each time and writes what the text gained,
// holding back text that ends in an incomplete character (a token that is
// part of a UTF-8 sequence decodes to U+FFFD until the rest comes). After
// a newline it starts a new line of tokens, so that the decoding stays
// short, as HuggingFace's TextStreamer does.
type textStream struct {
	tok     *tokenizer.Tokenizer
	w       io.Writer
	ids     []int64
	printed string
}

func (s *textStream) add(id int64) error {
	s.ids = append(s.ids, id)
	return s.flush(false)
}

func (s *textStream) flush(final bool) error {
	text, err := s.tok.Decode(s.ids, true)
	if err != nil {
		return err
	}
	if !final && strings.HasSuffix(text, "\uFFFD") {
		return nil
	}
	if !strings.HasPrefix(text, s.printed) {
		// Decoding more tokens changed text already written; write what
		// follows the common part.
		if !final {
			return nil
		}
		n := 0
		for n < len(text) && n < len(s.printed) && text[n] == s.printed[n] {
			n++
		}
		s.printed = text[:n]
	}
	if _, err := io.WriteString(s.w, text[len(s.printed):]); err != nil {
		return err
	}
	s.printed = text
	if strings.HasSuffix(text, "\n") {
		s.ids, s.printed = s.ids[:0], ""
	}
	return nil
}

// finish writes the rest of the text and a newline.
func (s *textStream) finish() error {
	if err := s.flush(true); err != nil {
		return err
	}
	_, err := io.WriteString(s.w, "\n")
	return err
}

// checkGeneratePositions refuses a prompt of n tokens that, with maxNew
// more, passes the positions that the model's rotary cache covers: ONNX
// Runtime would fail inside RotaryEmbedding at that step.
func checkGeneratePositions(model string, n, maxNew int) error {
	m, err := graph.Load(model)
	if err != nil {
		return err
	}
	defer m.Close()
	lim, ok := roles.RotaryLimit(m.Proto.Graph)
	switch {
	case !ok || int64(n+maxNew) <= lim.Positions:
		return nil
	case int64(n) >= lim.Positions:
		return fmt.Errorf("generate: the prompt is %d tokens, and %s's rotary cache (%s, read by node %q) covers %d positions: shorten the prompt", n, model, lim.Cache, lim.Node, lim.Positions)
	}
	return fmt.Errorf("generate: the prompt's %d tokens and --max-new-tokens %d pass the %d positions of %s's rotary cache (%s, read by node %q): give --max-new-tokens %d or less", n, maxNew, lim.Positions, model, lim.Cache, lim.Node, lim.Positions-int64(n))
}
