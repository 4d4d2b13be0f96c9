package tokenizer

import (
	"encoding/json"
	"regexp"
)

// replace is the Replace component of tokenizer.json, which is a
// normalizer and a decoder both: every match of a pattern, in the text or
// in each token, is replaced by content.
type replace struct {
	re      *regexp.Regexp
	content string
}

// parseReplace reads the Replace normalizer or decoder at key from its
// pattern, whose String is matched literally and whose Regex as a regular
// expression, and its content.
func parseReplace(pattern json.RawMessage, content, key string) (*replace, error) {
	p, err := decodePattern(pattern, key+".pattern")
	if err != nil {
		return nil, err
	}
	re, err := p.compile(key + ".pattern")
	if err != nil {
		return nil, err
	}
	return &replace{re: re, content: content}, nil
}

func (r *replace) normalize(s string) string {
	return r.re.ReplaceAllLiteralString(s, r.content)
}

func (r *replace) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		tokens[i] = r.normalize(t)
	}
	return tokens
}
