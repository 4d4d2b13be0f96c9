package runtime

import (
	"errors"
	"math"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// GenerateOptions says how many tokens to generate and how to choose them.
// The zero value generates 20 tokens greedily.
type GenerateOptions struct {
	// MaxNewTokens is the most tokens to generate per prompt; 0 means 20.
	MaxNewTokens int
	// EOS lists the token ids that end a sequence. The EOS token is kept in
	// the output, and the row stops there.
	EOS []int64

	// Temperature 0 chooses greedily: the token with the highest logit,
	// the lowest id on a tie. A positive Temperature samples from
	// softmax(logits/Temperature), after TopK and TopP, with a random
	// source seeded from Seed, so that a seed gives the same tokens every
	// time.
	Temperature float64
	// TopK keeps the TopK most likely tokens before sampling; 0 keeps all.
	TopK int
	// TopP keeps the fewest most likely tokens whose probabilities add up
	// to TopP or more (nucleus sampling); 0 and 1 keep all.
	TopP float64
	Seed uint64

	// RepetitionPenalty divides the positive logits of every token already
	// in the row (prompt included) by the penalty and multiplies the
	// negative ones by it, as HuggingFace's repetition_penalty does; it
	// applies to greedy choice too. 0 and 1 turn it off.
	RepetitionPenalty float64

	// TokensPerRun, when positive, feeds the prompt at most that many
	// tokens per run (it must divide the prompt length; 1 always does).
	// An onnxruntime-genai export, whose attention mask accepts several
	// new tokens only on an empty past, needs 1 to continue a cache
	// (rewrite.InjectPrefix widens that mask, so a prefixed one does not).
	// 0 feeds the prompt in one run.
	TokensPerRun int

	// PadID is the token fed at left padding, where the prompts of a batch
	// differ in length, and after a row has ended. The attention mask hides
	// it; any id in the vocabulary will do.
	PadID int64

	// Feeds are further inputs that every run takes as they are, such as
	// the LoRA factors of a model whose adapters are inputs; see
	// Sequence.SetFeeds.
	Feeds map[string]*Tensor

	// OnToken, if set, is called with every token as it is chosen, in
	// order, rows in batch order within a step: for streaming. An error
	// stops generation: Generate returns it with the tokens so far, unless
	// it is ErrStopGeneration, which stops without an error.
	OnToken func(Token) error
}

// Token is a generated token, as OnToken sees it.
type Token struct {
	Row  int   // the prompt's index in the batch
	Step int   // 0 for the first generated token of the row
	ID   int64 // the token
	// Logits are the model's logits for this position, before the
	// repetition penalty and temperature. They are valid only during the
	// OnToken call.
	Logits []float32
}

// ErrStopGeneration, returned by OnToken, ends generation early without an
// error.
var ErrStopGeneration = errors.New("runtime: stop generation")

// defaultMaxNewTokens is what MaxNewTokens 0 means.
const defaultMaxNewTokens = 20

// normalize checks the options and fills in the defaults.
func (o GenerateOptions) normalize() (GenerateOptions, error) {
	bad := func(format string, args ...any) (GenerateOptions, error) {
		return o, errorf("generate: %w", pkgerr.Format("runtime", format, args...))
	}
	switch {
	case o.MaxNewTokens < 0:
		return bad("MaxNewTokens must not be negative, got %d", o.MaxNewTokens)
	case o.Temperature < 0 || math.IsNaN(o.Temperature) || math.IsInf(o.Temperature, 0):
		return bad("Temperature must be 0 (greedy) or positive, got %v", o.Temperature)
	case o.TopK < 0:
		return bad("TopK must not be negative, got %d", o.TopK)
	case !(o.TopP >= 0 && o.TopP <= 1):
		return bad("TopP must be in [0, 1], got %v", o.TopP)
	case !(o.RepetitionPenalty >= 0) || math.IsInf(o.RepetitionPenalty, 0):
		return bad("RepetitionPenalty must be 0 (off) or positive, got %v", o.RepetitionPenalty)
	case o.Temperature == 0 && (o.TopK > 0 || (o.TopP > 0 && o.TopP < 1)):
		return bad("TopK and TopP apply to sampling: set Temperature > 0 (1 samples from the model's distribution)")
	case o.PadID < 0:
		return bad("PadID must not be negative, got %d", o.PadID)
	}
	for _, id := range o.EOS {
		if id < 0 {
			return bad("EOS id %d is negative", id)
		}
	}
	if o.MaxNewTokens == 0 {
		o.MaxNewTokens = defaultMaxNewTokens
	}
	if o.TopP == 0 {
		o.TopP = 1
	}
	if o.RepetitionPenalty == 0 {
		o.RepetitionPenalty = 1
	}
	return o, nil
}
