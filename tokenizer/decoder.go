package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoder turns tokens back into text, each decoder of a chain working on
// the tokens that the one before made; the text is the last ones joined.
type decoder interface {
	decodeChain(tokens []string) []string
}

// decoderSequence runs decoders in order.
type decoderSequence []decoder

func (s decoderSequence) decodeChain(tokens []string) []string {
	return runSequence(s, tokens, decoder.decodeChain)
}

// byteFallbackDecoder turns runs of byte tokens (<0xXX>) into the text
// their bytes spell, or one U+FFFD per byte when they are not UTF-8.
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) []string {
	out := tokens[:0:0]
	var run []byte
	flush := func() {
		if len(run) == 0 {
			return
		}
		if utf8.Valid(run) {
			out = append(out, string(run))
		} else {
			for range run {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range tokens {
		if b, ok := byteOfToken(t); ok {
			run = append(run, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// byteOfToken returns the byte of a byte token such as <0x0A>: six bytes,
// "<0x", two hexadecimal digits (or a plus sign and one, as Rust's integer
// parsing allows), ">".
func byteOfToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	digits := t[3:5]
	if digits[0] == '+' {
		digits = digits[1:]
	}
	var b byte
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case '0' <= c && c <= '9':
			b = b<<4 | (c - '0')
		case 'a' <= c && c <= 'f':
			b = b<<4 | (c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			b = b<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return b, true
}

// fuseDecoder joins all tokens into one.
type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) []string {
	return []string{strings.Join(tokens, "")}
}

// stripDecoder removes up to start leading and stop trailing occurrences of
// a character from every token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d *stripDecoder) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		for k := 0; k < d.start; k++ {
			r, n := utf8.DecodeRuneInString(t)
			if n == 0 || r != d.content {
				break
			}
			t = t[n:]
		}
		for k := 0; k < d.stop; k++ {
			r, n := utf8.DecodeLastRuneInString(t)
			if n == 0 || r != d.content {
				break
			}
			t = t[:len(t)-n]
		}
		tokens[i] = t
	}
	return tokens
}

// bpeDecoder is the BPE decoder: the end-of-word suffix becomes a space,
// and nothing in the last token.
type bpeDecoder struct{ suffix string }

func (d *bpeDecoder) decodeChain(tokens []string) []string {
	for i, t := range tokens {
		with := " "
		if i == len(tokens)-1 {
			with = ""
		}
		tokens[i] = strings.ReplaceAll(t, d.suffix, with)
	}
	return tokens
}

// decoderJSON holds the fields of every decoder type.
type decoderJSON struct {
	Type     string            `json:"type"`
	Decoders []json.RawMessage `json:"decoders"`
	Pattern  json.RawMessage   `json:"pattern"`
	Content  string            `json:"content"`
	Start    int               `json:"start"`
	Stop     int               `json:"stop"`
	Prefix   *string           `json:"prefix"`
	Cleanup  *bool             `json:"cleanup"`
	Suffix   *string           `json:"suffix"`
	metaspaceJSON
}

// parseDecoder reads the decoder at key.
func parseDecoder(raw json.RawMessage, key string, depth int) (decoder, error) {
	var j decoderJSON
	if err := decodeComponent(raw, key, depth, &j.Type, &j); err != nil {
		return nil, err
	}
	switch j.Type {
	case "Sequence":
		return parseSequence[decoderSequence](j.Decoders, key, "decoders", depth, parseDecoder)
	case "Replace":
		r, err := parseReplace(j.Pattern, j.Content, key)
		if err != nil {
			return nil, err
		}
		return r, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		c, err := oneChar(j.Content, key+".content")
		if err != nil {
			return nil, err
		}
		if j.Start < 0 || j.Stop < 0 {
			return nil, fmt.Errorf("%s: start %d and stop %d must not be negative", key, j.Start, j.Stop)
		}
		return &stripDecoder{content: c, start: j.Start, stop: j.Stop}, nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Metaspace":
		rep, scheme, err := j.metaspaceJSON.parse(key)
		if err != nil {
			return nil, err
		}
		return &metaspaceDecoder{replacement: rep, scheme: scheme}, nil
	case "WordPiece":
		d := &wordPieceDecoder{prefix: "##", cleanup: orTrue(j.Cleanup)}
		if j.Prefix != nil {
			d.prefix = *j.Prefix
		}
		return d, nil
	case "BPEDecoder":
		d := &bpeDecoder{suffix: "</w>"}
		if j.Suffix != nil {
			d.suffix = *j.Suffix
		}
		return d, nil
	}
	return nil, unsupported("decoder", key, j.Type)
}
