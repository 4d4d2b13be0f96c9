package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// GPT-2's byte-level alphabet: every byte is written as a printable
// character, so that BPE runs on any bytes without a space or a control
// character in its vocabulary. Printable bytes (! to ~, ¡ to ¬, ® to ÿ)
// stand for themselves; the 68 others become U+0100 onwards, in byte order.
var byteChars, charBytes = byteAlphabet()

func byteAlphabet() (chars [256]rune, bytes map[rune]byte) {
	printable := func(b int) bool { return '!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF }
	bytes = make(map[rune]byte, 256)
	next := rune(256)
	for b := 0; b < 256; b++ {
		c := rune(b)
		if !printable(b) {
			c = next
			next++
		}
		chars[b] = c
		bytes[c] = byte(b)
	}
	return chars, bytes
}

// byteLevelChars returns s with each of its bytes written as its
// byte-level character.
func byteLevelChars(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteChars[s[i]])
	}
	return b.String()
}

// byteLevelPreTokenizer is the ByteLevel pre-tokenizer: an optional
// leading space, GPT-2's split into words, and each word's bytes written
// in the byte-level alphabet.
type byteLevelPreTokenizer struct {
	addPrefixSpace bool
	useRegex       bool
}

func (p *byteLevelPreTokenizer) preTokenize(words []word) []word {
	out := words[:0:0]
	for _, w := range words {
		text := w.text
		if p.addPrefixSpace && !strings.HasPrefix(text, " ") {
			text = " " + text
		}
		if !p.useRegex {
			out = append(out, word{text: byteLevelChars(text), atStart: w.atStart})
			continue
		}
		for i, piece := range splitGPT2(text) {
			out = append(out, word{text: byteLevelChars(piece), atStart: w.atStart && i == 0})
		}
	}
	return out
}

// byteLevelNormalizer is the ByteLevel normalizer: the bytes of the text in
// the byte-level alphabet.
type byteLevelNormalizer struct{}

func (byteLevelNormalizer) normalize(s string) string { return byteLevelChars(s) }

// byteLevelDecoder is the ByteLevel decoder: the bytes that the tokens'
// characters stand for (a token with a character outside the alphabet,
// such as an added token, stands for its own UTF-8), read as UTF-8 with
// ill-formed parts replaced by U+FFFD.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) []string {
	var b []byte
	for _, t := range tokens {
		start := len(b)
		for _, c := range t {
			by, ok := charBytes[c]
			if !ok {
				b = append(b[:start], t...)
				break
			}
			b = append(b, by)
		}
	}
	return []string{lossyUTF8(b)}
}

// lossyUTF8 reads b as UTF-8 the way Rust's String::from_utf8_lossy does:
// each maximal prefix of a well-formed sequence that cannot be completed,
// or a byte that starts none, becomes one U+FFFD.
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			out.Write(b[i : i+n])
			i += n
			continue
		}
		out.WriteRune(utf8.RuneError)
		i += invalidPrefixLen(b[i:])
	}
	return out.String()
}

// invalidPrefixLen returns the length of the maximal prefix of b that
// begins a well-formed UTF-8 sequence but does not complete one (at least
// 1), as the Unicode standard's replacement practice counts it.
func invalidPrefixLen(b []byte) int {
	lead := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case 0xC2 <= lead && lead <= 0xDF:
		need = 1
	case lead == 0xE0:
		need, lo = 2, 0xA0
	case 0xE1 <= lead && lead <= 0xEC, lead == 0xEE, lead == 0xEF:
		need = 2
	case lead == 0xED:
		need, hi = 2, 0x9F
	case lead == 0xF0:
		need, lo = 3, 0x90
	case 0xF1 <= lead && lead <= 0xF3:
		need = 3
	case lead == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(b); k++ {
		c := b[n]
		if k == 0 && (c < lo || c > hi) || k > 0 && (c < 0x80 || c > 0xBF) {
			break
		}
		n++
	}
	return n
}
