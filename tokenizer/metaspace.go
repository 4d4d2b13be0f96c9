package tokenizer

import (
	"fmt"
	"strings"
)

// prependScheme is when Metaspace puts its replacement character before a
// word.
type prependScheme int

const (
	prependAlways prependScheme = iota // before every word that lacks it
	prependFirst                       // before the word at the start of the text
	prependNever
)

// metaspacePreTokenizer is the Metaspace pre-tokenizer of SentencePiece
// models: spaces become the replacement character (▁), one is prepended
// as the scheme says, and words are split before each replacement.
type metaspacePreTokenizer struct {
	replacement string
	rep         rune // the replacement character
	scheme      prependScheme
	split       bool
}

func (m *metaspacePreTokenizer) preTokenize(words []word) []word {
	out := make([]word, 0, len(words))
	isRep := charPattern(func(r rune) bool { return r == m.rep })
	for _, w := range words {
		text := strings.ReplaceAll(w.text, " ", m.replacement)
		prepend := m.scheme == prependAlways || m.scheme == prependFirst && w.atStart
		if prepend && text != "" && !strings.HasPrefix(text, m.replacement) {
			text = m.replacement + text
		}
		w := word{text: text, atStart: w.atStart}
		if !m.split {
			out = append(out, w)
			continue
		}
		out = splitWord(out, w, isRep, mergedWithNext)
	}
	return out
}

// metaspaceDecoder is the Metaspace decoder: replacement characters become
// spaces, except in the first token when the scheme prepends one.
type metaspaceDecoder struct {
	replacement string
	scheme      prependScheme
}

func (m *metaspaceDecoder) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		with := " "
		if i == 0 && m.scheme != prependNever {
			with = ""
		}
		tokens[i] = strings.ReplaceAll(t, m.replacement, with)
	}
	return tokens
}

// metaspaceJSON holds the fields that the Metaspace pre-tokenizer and
// decoder share (ByteLevel's pre-tokenizer reads add_prefix_space too).
type metaspaceJSON struct {
	Replacement    string  `json:"replacement"`
	AddPrefixSpace *bool   `json:"add_prefix_space"`
	PrependScheme  *string `json:"prepend_scheme"`
}

// parse reads the replacement character and the scheme, from
// prepend_scheme, or from the older add_prefix_space.
func (m metaspaceJSON) parse(key string) (string, prependScheme, error) {
	replacement, addPrefixSpace, scheme := m.Replacement, m.AddPrefixSpace, m.PrependScheme
	if _, err := oneChar(replacement, key+".replacement"); err != nil {
		return "", 0, err
	}
	s := prependAlways
	if scheme != nil {
		switch *scheme {
		case "always":
		case "first":
			s = prependFirst
		case "never":
			s = prependNever
		default:
			return "", 0, fmt.Errorf("%s.prepend_scheme: unknown scheme %s (want always, first or never)", key, quote(*scheme))
		}
	}
	if addPrefixSpace != nil && !*addPrefixSpace {
		if s != prependNever && scheme != nil {
			return "", 0, fmt.Errorf("%s: add_prefix_space false does not match prepend_scheme %s", key, quote(*scheme))
		}
		s = prependNever
	}
	return replacement, s, nil
}

func parseMetaspace(j *preTokenizerJSON, key string) (preTokenizer, error) {
	rep, scheme, err := j.metaspaceJSON.parse(key)
	if err != nil {
		return nil, err
	}
	r, _ := oneChar(rep, key)
	return &metaspacePreTokenizer{replacement: rep, rep: r, scheme: scheme, split: orTrue(j.Split)}, nil
}
