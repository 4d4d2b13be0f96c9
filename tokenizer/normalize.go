package tokenizer

import (
	"encoding/json"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites text before it is split into words.
type normalizer interface {
	normalize(s string) string
}

// normalizerSequence runs normalizers in order.
type normalizerSequence []normalizer

func (s normalizerSequence) normalize(text string) string {
	return runSequence(s, text, normalizer.normalize)
}

// prependNormalizer puts a string before any text that is not empty.
type prependNormalizer struct{ prepend string }

func (p *prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.prepend + s
}

// funcNormalizer is a normalizer that is a function of the text.
type funcNormalizer func(string) string

func (f funcNormalizer) normalize(s string) string { return f(s) }

// stripNormalizer removes white space from the start and or end.
type stripNormalizer struct{ left, right bool }

func (st *stripNormalizer) normalize(s string) string {
	if st.left {
		s = strings.TrimLeftFunc(s, isWhitespace)
	}
	if st.right {
		s = strings.TrimRightFunc(s, isWhitespace)
	}
	return s
}

// stripAccents removes combining marks.
func stripAccents(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsMark(r) {
			return -1
		}
		return r
	}, s)
}

// nmt is the Nmt normalizer: ASCII control characters are removed and other
// spacing characters become spaces.
func nmt(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 0x01 <= r && r <= 0x08, r == 0x0B, 0x0E <= r && r <= 0x1F, r == 0x7F, r == 0x8F, r == 0x9F:
			return -1
		case r == 0x09, r == 0x0A, r == 0x0C, r == 0x0D, r == 0x1680, 0x200B <= r && r <= 0x200F,
			r == 0x2028, r == 0x2029, r == 0x2581, r == 0xFEFF, r == 0xFFFD:
			return ' '
		}
		return r
	}, s)
}

// normalizerJSON holds the fields of every normalizer type.
type normalizerJSON struct {
	Type               string            `json:"type"`
	Normalizers        []json.RawMessage `json:"normalizers"`
	Prepend            string            `json:"prepend"`
	Pattern            json.RawMessage   `json:"pattern"`
	Content            string            `json:"content"`
	StripLeft          bool              `json:"strip_left"`
	StripRight         bool              `json:"strip_right"`
	CleanText          *bool             `json:"clean_text"`
	HandleChineseChars *bool             `json:"handle_chinese_chars"`
	StripAccents       *bool             `json:"strip_accents"`
	Lowercase          *bool             `json:"lowercase"`
}

// parseNormalizer reads the normalizer at key.
func parseNormalizer(raw json.RawMessage, key string, depth int) (normalizer, error) {
	var j normalizerJSON
	if err := decodeComponent(raw, key, depth, &j.Type, &j); err != nil {
		return nil, err
	}
	switch j.Type {
	case "Sequence":
		return parseSequence[normalizerSequence](j.Normalizers, key, "normalizers", depth, parseNormalizer)
	case "Prepend":
		return &prependNormalizer{prepend: j.Prepend}, nil
	case "Replace":
		r, err := parseReplace(j.Pattern, j.Content, key)
		if err != nil {
			return nil, err
		}
		return r, nil
	case "Lowercase":
		return funcNormalizer(lowercase), nil
	case "Strip":
		return &stripNormalizer{left: j.StripLeft, right: j.StripRight}, nil
	case "StripAccents":
		return funcNormalizer(stripAccents), nil
	case "NFC":
		return funcNormalizer(norm.NFC.String), nil
	case "NFD":
		return funcNormalizer(norm.NFD.String), nil
	case "NFKC":
		return funcNormalizer(norm.NFKC.String), nil
	case "NFKD":
		return funcNormalizer(norm.NFKD.String), nil
	case "Nmt":
		return funcNormalizer(nmt), nil
	case "ByteLevel":
		return byteLevelNormalizer{}, nil
	case "BertNormalizer":
		b := &bertNormalizer{cleanText: orTrue(j.CleanText), chineseChars: orTrue(j.HandleChineseChars), lowercase: orTrue(j.Lowercase)}
		b.stripAccents = b.lowercase
		if j.StripAccents != nil {
			b.stripAccents = *j.StripAccents
		}
		return b, nil
	}
	return nil, unsupported("normalizer", key, j.Type)
}
