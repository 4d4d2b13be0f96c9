package tokenizer

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// word is a piece of text that the model tokenizes on its own. atStart is
// whether it begins at the start of the text (Metaspace's "first" scheme
// prepends only there).
type word struct {
	text    string
	atStart bool
}

// preTokenizer splits words into smaller words.
type preTokenizer interface {
	preTokenize(words []word) []word
}

// splitPreTokenizer splits every word where a pattern matches.
type splitPreTokenizer struct {
	pattern  pattern
	behavior splitBehavior
}

func (p *splitPreTokenizer) preTokenize(words []word) []word {
	out := make([]word, 0, len(words))
	for _, w := range words {
		out = splitWord(out, w, p.pattern, p.behavior)
	}
	return out
}

// preTokenizerSequence runs pre-tokenizers in order.
type preTokenizerSequence []preTokenizer

func (s preTokenizerSequence) preTokenize(words []word) []word {
	return runSequence(s, words, preTokenizer.preTokenize)
}

// whitespacePattern is the Whitespace pre-tokenizer's `\w+|[^\w\s]+`.
type whitespacePattern struct{}

func (whitespacePattern) findMatches(s string) []span {
	if s == "" {
		return []span{{0, 0, false}}
	}
	var spans []span
	for i := 0; i < len(s); {
		r, _ := utf8.DecodeRuneInString(s[i:])
		var end int
		switch {
		case isWordChar(r):
			end = runEnd(s, i, isWordChar)
		case !isWhitespace(r):
			end = runEnd(s, i, func(r rune) bool { return !isWordChar(r) && !isWhitespace(r) })
		default:
			end = runEnd(s, i, isWhitespace)
			spans = append(spans, span{i, end, false})
			i = end
			continue
		}
		spans = append(spans, span{i, end, true})
		i = end
	}
	return spans
}

// preTokenizerJSON holds the fields of every pre-tokenizer type.
type preTokenizerJSON struct {
	Type             string            `json:"type"`
	Pretokenizers    []json.RawMessage `json:"pretokenizers"`
	Pattern          json.RawMessage   `json:"pattern"`
	Behavior         string            `json:"behavior"`
	Invert           bool              `json:"invert"`
	IndividualDigits bool              `json:"individual_digits"`
	Delimiter        string            `json:"delimiter"`
	Split            *bool             `json:"split"`
	UseRegex         *bool             `json:"use_regex"`
	metaspaceJSON
}

// parsePreTokenizer reads the pre-tokenizer at key.
func parsePreTokenizer(raw json.RawMessage, key string, depth int) (preTokenizer, error) {
	var j preTokenizerJSON
	if err := decodeComponent(raw, key, depth, &j.Type, &j); err != nil {
		return nil, err
	}
	switch j.Type {
	case "Sequence":
		return parseSequence[preTokenizerSequence](j.Pretokenizers, key, "pretokenizers", depth, parsePreTokenizer)
	case "Split":
		p, err := parsePattern(j.Pattern, key+".pattern")
		if err != nil {
			return nil, err
		}
		behavior, err := parseBehavior(j.Behavior, key)
		if err != nil {
			return nil, err
		}
		if j.Invert {
			p = inverted{p}
		}
		return &splitPreTokenizer{pattern: p, behavior: behavior}, nil
	case "Whitespace":
		return &splitPreTokenizer{pattern: inverted{whitespacePattern{}}, behavior: removed}, nil
	case "WhitespaceSplit":
		return &splitPreTokenizer{pattern: charPattern(isWhitespace), behavior: removed}, nil
	case "BertPreTokenizer":
		return preTokenizerSequence{
			&splitPreTokenizer{pattern: charPattern(isWhitespace), behavior: removed},
			&splitPreTokenizer{pattern: charPattern(isPunctuation), behavior: isolated},
		}, nil
	case "Punctuation":
		behavior := isolated
		if j.Behavior != "" {
			var err error
			if behavior, err = parseBehavior(j.Behavior, key); err != nil {
				return nil, err
			}
		}
		return &splitPreTokenizer{pattern: charPattern(isPunctuation), behavior: behavior}, nil
	case "Digits":
		behavior := contiguous
		if j.IndividualDigits {
			behavior = isolated
		}
		return &splitPreTokenizer{pattern: charPattern(isNumeric), behavior: behavior}, nil
	case "CharDelimiterSplit":
		d, err := oneChar(j.Delimiter, key+".delimiter")
		if err != nil {
			return nil, err
		}
		return &splitPreTokenizer{pattern: charPattern(func(r rune) bool { return r == d }), behavior: removed}, nil
	case "Metaspace":
		return parseMetaspace(&j, key)
	case "ByteLevel":
		return &byteLevelPreTokenizer{addPrefixSpace: orTrue(j.AddPrefixSpace), useRegex: orTrue(j.UseRegex)}, nil
	}
	return nil, unsupported("pre-tokenizer", key, j.Type)
}

// orTrue returns *b, or true when b is nil.
func orTrue(b *bool) bool { return b == nil || *b }

// oneChar returns the one character of s, a field that must hold one.
func oneChar(s, key string) (rune, error) {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || n != len(s) || r == utf8.RuneError && n == 1 {
		return 0, fmt.Errorf("%s: %s is not one character", key, quote(s))
	}
	return r, nil
}
