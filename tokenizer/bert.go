package tokenizer

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// bertNormalizer is BERT's normalizer: control characters removed and
// white space made spaces (cleanText), spaces around CJK ideographs
// (chineseChars), accents removed (stripAccents, by NFD and dropping
// nonspacing marks), and lower case.
type bertNormalizer struct {
	cleanText, chineseChars, stripAccents, lowercase bool
}

func (b *bertNormalizer) normalize(s string) string {
	if b.cleanText {
		s = strings.Map(func(r rune) rune {
			switch {
			case r == 0 || r == 0xFFFD || r != '\t' && r != '\n' && r != '\r' && isOther(r):
				return -1
			case isWhitespace(r):
				return ' '
			}
			return r
		}, s)
	}
	if b.chineseChars && strings.IndexFunc(s, isCJK) >= 0 {
		var out strings.Builder
		for _, r := range s {
			if isCJK(r) {
				out.WriteByte(' ')
				out.WriteRune(r)
				out.WriteByte(' ')
				continue
			}
			out.WriteRune(r)
		}
		s = out.String()
	}
	if b.stripAccents {
		s = strings.Map(func(r rune) rune {
			if unicode.Is(unicode.Mn, r) {
				return -1
			}
			return r
		}, norm.NFD.String(s))
	}
	if b.lowercase {
		s = lowercase(s)
	}
	return s
}

// isCJK reports whether r is in the CJK ideograph blocks that BERT puts
// spaces around.
func isCJK(r rune) bool {
	return 0x4E00 <= r && r <= 0x9FFF || 0x3400 <= r && r <= 0x4DBF || 0x20000 <= r && r <= 0x2A6DF ||
		0x2A700 <= r && r <= 0x2B73F || 0x2B740 <= r && r <= 0x2B81F || 0x2B920 <= r && r <= 0x2CEAF ||
		0xF900 <= r && r <= 0xFAFF || 0x2F800 <= r && r <= 0x2FA1F
}
