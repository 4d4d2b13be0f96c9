package openai

import (
	"strings"
	"unicode/utf8"

	"github.com/peftonnx/peftonnx/tokenizer"
)

// contextTokens is how many of the prompt's last tokens are decoded
// before the completion, so that its first token keeps the space that a
// tokenizer such as Llama's strips at the start of a text.
const contextTokens = 4

// textAssembler turns generated tokens into text as it becomes final: it
// holds back a character whose bytes have not all come (it decodes to
// U+FFFD until then) and text that may be the start of a stop string, and
// ends the text before the first stop string. Streaming and non-streaming
// responses are both made of its pieces, so they agree.
type textAssembler struct {
	tok         *tokenizer.Tokenizer
	context     []int64
	contextText string
	ids         []int64
	stops       []string
	sent        string // the text given out so far
	stopped     bool
}

func newTextAssembler(tok *tokenizer.Tokenizer, prompt []int64, stops []string) (*textAssembler, error) {
	a := &textAssembler{tok: tok, stops: stops}
	a.context = append([]int64(nil), prompt[max(0, len(prompt)-contextTokens):]...)
	text, err := tok.Decode(a.context, true)
	if err != nil {
		return nil, err
	}
	a.contextText = text
	a.ids = a.context
	return a, nil
}

// text decodes the completion so far.
func (a *textAssembler) text() (string, error) {
	full, err := a.tok.Decode(a.ids, true)
	if err != nil {
		return "", err
	}
	if rest, ok := strings.CutPrefix(full, a.contextText); ok && !strings.HasSuffix(a.contextText, "\uFFFD") {
		return rest, nil
	}
	// The prompt's last tokens decode differently with the completion
	// after them: decode the completion alone.
	return a.tok.Decode(a.ids[len(a.context):], true)
}

// add takes the next token and returns the text that became final, and
// whether a stop string ended the completion.
func (a *textAssembler) add(id int64) (string, bool, error) {
	if a.stopped {
		return "", true, nil
	}
	a.ids = append(a.ids, id)
	text, err := a.text()
	if err != nil {
		return "", false, err
	}
	if !strings.HasPrefix(text, a.sent) {
		return "", false, nil // the new token changed text already given out: wait
	}
	if cut := a.firstStop(text); cut >= 0 {
		a.stopped = true
		return a.give(text[:max(cut, len(a.sent))]), true, nil
	}
	safe := len(text)
	for safe > len(a.sent) {
		r, size := utf8.DecodeLastRuneInString(text[:safe])
		if r != utf8.RuneError || size != 3 {
			break
		}
		safe -= size
	}
	safe -= a.stopPrefix(text[:safe])
	if safe <= len(a.sent) {
		return "", false, nil
	}
	return a.give(text[:safe]), false, nil
}

// finish returns the text held back at the end of the completion.
func (a *textAssembler) finish() (string, error) {
	if a.stopped {
		return "", nil
	}
	text, err := a.text()
	if err != nil || !strings.HasPrefix(text, a.sent) {
		return "", err
	}
	return a.give(text), nil
}

func (a *textAssembler) give(upTo string) string {
	piece := upTo[len(a.sent):]
	a.sent = upTo
	return piece
}

// firstStop returns where the first stop string starts in text, or -1.
func (a *textAssembler) firstStop(text string) int {
	first := -1
	for _, s := range a.stops {
		if i := strings.Index(text, s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

// stopPrefix returns the length of the longest end of text that begins a
// stop string.
func (a *textAssembler) stopPrefix(text string) int {
	longest := 0
	for _, s := range a.stops {
		for k := min(len(s)-1, len(text)); k > longest; k-- {
			if strings.HasSuffix(text, s[:k]) {
				longest = k
				break
			}
		}
	}
	return longest
}
