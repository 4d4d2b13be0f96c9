package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// gpt2Pattern is the regular expression that GPT-2 splits text into words
// with, and that the ByteLevel pre-tokenizer uses. Go's regexp has no
// lookahead, so splitGPT2 implements it by hand.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// splitGPT2 splits s into the successive matches of gpt2Pattern. Every
// character is matched by one of its alternatives, so the pieces cover s.
func splitGPT2(s string) []string {
	var pieces []string
	for i := 0; i < len(s); {
		end := matchGPT2(s, i)
		pieces = append(pieces, s[i:end])
		i = end
	}
	return pieces
}

// matchGPT2 returns the end of the match of gpt2Pattern that starts at
// s[i], trying its alternatives in order as a backtracking engine does.
func matchGPT2(s string, i int) int {
	r, n := utf8.DecodeRuneInString(s[i:])
	// 's|'t|'re|'ve|'m|'ll|'d
	if r == '\'' {
		if n := contractionLen(s[i+1:]); n > 0 {
			return i + 1 + n
		}
	}
	// ` ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+`: the optional space is taken
	// when what follows it fits the class.
	j, c := i, r
	if r == ' ' && i+1 < len(s) {
		j = i + 1
		c, _ = utf8.DecodeRuneInString(s[j:])
	}
	switch {
	case unicode.IsLetter(c):
		return runEnd(s, j, unicode.IsLetter)
	case unicode.IsNumber(c):
		return runEnd(s, j, unicode.IsNumber)
	case !isWhitespace(c):
		return runEnd(s, j, isGPT2Other)
	}
	// s[i] is white space (a space followed by white space, or another
	// white space character). \s+(?!\S): the run of white space, less its
	// last character when a non-space follows and that leaves any; else
	// \s+: the whole run.
	end := runEnd(s, i+n, isWhitespace)
	if end == len(s) {
		return end
	}
	_, last := utf8.DecodeLastRuneInString(s[:end])
	if end-last > i {
		return end - last
	}
	return end
}

// contractionLen returns the length of the contraction (s, t, re, ve, m,
// ll, d) that s starts with, or 0.
func contractionLen(s string) int {
	for _, c := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
		if len(s) >= len(c) && s[:len(c)] == c {
			return len(c)
		}
	}
	return 0
}

// isGPT2Other is [^\s\p{L}\p{N}].
func isGPT2Other(r rune) bool {
	return !isWhitespace(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r)
}

// runEnd returns the end of the run of characters from s[i] on that are
// in the class.
func runEnd(s string, i int, in func(rune) bool) int {
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !in(r) {
			break
		}
		i += n
	}
	return i
}
