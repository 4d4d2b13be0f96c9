package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// Encode returns the token ids of text. With addSpecial the tokenizer's
// post-processor adds its special tokens (for Llama, a leading BOS), as
// HF's tokenizer(text) does by default. Text longer than the limit
// (DefaultMaxTextBytes, WithMaxTextBytes) and text that is not UTF-8 are
// refused.
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int64, error) {
	if len(text) > t.opts.maxTextBytes {
		return nil, errorf("%s: a text of %d bytes is longer than the limit of %d", t.path, len(text), t.opts.maxTextBytes)
	}
	if !utf8.ValidString(text) {
		return nil, errorf("%s: text %s is not valid UTF-8", t.path, quote(text))
	}
	ids := make([]int64, 0, len(text)/3+2)
	var pieces []part
	if text != "" {
		pieces = t.raw.split(nil, part{text: text, id: -1, atStart: true})
	}
	var words []word
	for _, p := range pieces {
		if p.id >= 0 {
			ids = append(ids, p.id)
			continue
		}
		if p.text == "" {
			continue
		}
		normalized := p
		if t.normalizer != nil {
			normalized.text = t.normalizer.normalize(p.text)
		}
		for _, q := range t.normalized.split(nil, normalized) {
			if q.id >= 0 {
				ids = append(ids, q.id)
				continue
			}
			if q.text == "" {
				continue
			}
			words = append(words[:0], word{text: q.text, atStart: q.atStart})
			if t.preTokenizer != nil {
				words = t.preTokenizer.preTokenize(words)
			}
			for _, w := range words {
				var err error
				if ids, err = t.model.tokenize(w.text, ids); err != nil {
					return nil, errorf("%s: %w", t.path, err)
				}
			}
		}
	}
	if addSpecial && t.postProcessor != nil {
		ids = t.postProcessor.process(ids)
	}
	return ids, nil
}

// Decode returns the text of ids. With skipSpecial, special tokens (BOS,
// EOS, padding) are left out. An id outside the vocabulary is an error.
func (t *Tokenizer) Decode(ids []int64, skipSpecial bool) (string, error) {
	tokens := make([]string, 0, len(ids))
	for i, id := range ids {
		tok, ok := t.tokens[id]
		if !ok {
			if id < 0 || id >= int64(t.vocabSize) {
				return "", errorf("%s: token id %d at position %d is outside the vocabulary of %d", t.path, id, i, t.vocabSize)
			}
			return "", errorf("%s: token id %d at position %d is not a token's", t.path, id, i)
		}
		if skipSpecial && t.special[tok] {
			continue
		}
		tokens = append(tokens, tok)
	}
	if t.decoder == nil {
		return strings.Join(tokens, " "), nil
	}
	return strings.Join(t.decoder.decodeChain(tokens), ""), nil
}
