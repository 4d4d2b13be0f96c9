package tokenizer

import (
	"strings"
	"unicode"
)

// The character classes of HF tokenizers, which are Rust's: char methods
// and the Unicode classes of Rust's regex crate (\s, \w).

// isWhitespace is Rust's char::is_whitespace and regex \s: the Unicode
// White_Space property.
func isWhitespace(r rune) bool { return unicode.IsSpace(r) }

// isPunctuation is ASCII punctuation or a Unicode punctuation character
// (category P), as the Punctuation and Bert pre-tokenizers split on.
func isPunctuation(r rune) bool {
	if r < 0x80 {
		return strings.ContainsRune("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", r)
	}
	return unicode.IsPunct(r)
}

// isWordChar is the regex crate's Unicode \w: Alphabetic, marks, decimal
// digits, connector punctuation and the joiners.
func isWordChar(r rune) bool {
	if r < 0x80 {
		return r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.In(r, unicode.Nd, unicode.Nl, unicode.Pc, unicode.Other_Alphabetic, unicode.Join_Control)
}

// isNumeric is Rust's char::is_numeric: Unicode category N.
func isNumeric(r rune) bool { return unicode.IsNumber(r) }

// isOther is Unicode category C (control, format, private use,
// surrogate, unassigned), as BertNormalizer removes.
func isOther(r rune) bool {
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) {
		return true
	}
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

// lowercase is Rust's str lowercasing character by character
// (char::to_lowercase): Unicode's lower case mapping, where U+0130 (İ)
// becomes two characters.
func lowercase(s string) string {
	if !strings.ContainsRune(s, 'İ') {
		return strings.Map(unicode.ToLower, s)
	}
	var b strings.Builder
	for _, r := range s {
		if r == 'İ' {
			b.WriteString("i\u0307")
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
