package chattemplate

import (
	"strings"
	"unicode"
)

// A segment is a piece of the template: text, or the inside of a tag.
type segment struct {
	kind byte // 't' text, '{' expression {{ }}, '%' statement {% %}
	text string
	line int
}

// split cuts src into segments, applying whitespace control (- and + in
// tags) and HF's trim_blocks and lstrip_blocks. Comments are dropped.
func split(src string) ([]segment, error) {
	var segs []segment
	line := 1
	trimNext := false    // a "-" closed the previous tag: strip the leading whitespace of the next text
	newlineNext := false // trim_blocks: drop one newline after a block tag
	for len(src) > 0 {
		i := indexTag(src)
		text := src
		if i >= 0 {
			text = src[:i]
		}
		if trimNext {
			text = strings.TrimLeftFunc(text, unicode.IsSpace)
		} else if newlineNext {
			text = strings.TrimPrefix(strings.TrimPrefix(text, "\r"), "\n")
		}
		trimNext, newlineNext = false, false
		if i < 0 {
			segs = appendText(segs, text, line)
			break
		}
		line += strings.Count(src[:i], "\n")
		kind := src[i+1]
		rest := src[i+2:]
		closer := map[byte]string{'{': "}}", '%': "%}", '#': "#}"}[kind]
		end := strings.Index(rest, closer)
		if end < 0 {
			return nil, errorAt(line, "tag %q is not closed with %q", src[i:i+2], closer)
		}
		inner := rest[:end]
		switch {
		case strings.HasPrefix(inner, "-"):
			text = strings.TrimRightFunc(text, unicode.IsSpace)
			inner = inner[1:]
		case strings.HasPrefix(inner, "+"):
			inner = inner[1:]
		case kind != '{':
			text = lstripBlock(text)
		}
		switch {
		case strings.HasSuffix(inner, "-"):
			trimNext = true
			inner = inner[:len(inner)-1]
		case strings.HasSuffix(inner, "+"):
			inner = inner[:len(inner)-1]
		case kind != '{':
			newlineNext = true
		}
		segs = appendText(segs, text, line)
		if kind != '#' {
			segs = append(segs, segment{kind: kind, text: inner, line: line})
		}
		line += strings.Count(src[i:i+2+end+2], "\n")
		src = rest[end+2:]
	}
	return segs, nil
}

func appendText(segs []segment, text string, line int) []segment {
	if text == "" {
		return segs
	}
	return append(segs, segment{kind: 't', text: text, line: line})
}

// indexTag returns where the next tag opens in s, or -1.
func indexTag(s string) int {
	for off := 0; ; {
		i := strings.IndexByte(s[off:], '{')
		if i < 0 || off+i+1 >= len(s) {
			return -1
		}
		switch s[off+i+1] {
		case '{', '%', '#':
			return off + i
		}
		off += i + 1
	}
}

// lstripBlock removes the spaces and tabs between the start of the line
// and a block tag, when nothing else stands there (lstrip_blocks).
func lstripBlock(text string) string {
	j := len(text)
	for j > 0 && (text[j-1] == ' ' || text[j-1] == '\t') {
		j--
	}
	if j == 0 || text[j-1] == '\n' {
		return text[:j]
	}
	return text
}

// A token of an expression.
type token struct {
	kind byte // 'n' name, 's' string, 'i' integer, 'f' float, 'o' operator, 0 end
	text string
}

// tokenize cuts the inside of a tag into tokens.
func tokenize(s string, line int) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '_' || unicode.IsLetter(rune(c)):
			j := i
			for j < len(s) && (s[j] == '_' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			toks = append(toks, token{'n', s[i:j]})
			i = j
		case unicode.IsDigit(rune(c)):
			j, kind := i, byte('i')
			for j < len(s) && (unicode.IsDigit(rune(s[j])) || s[j] == '_' || (s[j] == '.' && kind == 'i' && j+1 < len(s) && unicode.IsDigit(rune(s[j+1])))) {
				if s[j] == '.' {
					kind = 'f'
				}
				j++
			}
			toks = append(toks, token{kind, strings.ReplaceAll(s[i:j], "_", "")})
			i = j
		case c == '\'' || c == '"':
			str, n, err := unquote(s[i:], line)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{'s', str})
			i += n
		default:
			op := ""
			for _, o := range []string{"==", "!=", "<=", ">=", "//", "**", "<", ">", "+", "-", "*", "/", "%", "~", "|", ".", ",", ":", "(", ")", "[", "]", "{", "}", "="} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, errorAt(line, "unexpected character %q", c)
			}
			toks = append(toks, token{'o', op})
			i += len(op)
		}
	}
	return toks, nil
}

// unquote reads the string literal at the start of s and returns its value
// and length.
func unquote(s string, line int) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\', '\'', '"':
				b.WriteByte(s[i])
			default:
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errorAt(line, "string literal is not closed")
}
