package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// Regular expressions in tokenizer.json are Oniguruma's, where \s, \d and
// \w are Unicode classes; in Go's regexp they are ASCII. goRegex rewrites
// them as Unicode classes. Lookaround, which Go's regexp lacks, is refused,
// except in the one pattern implemented by hand (GPT-2's, splitGPT2).

// Unicode classes for Oniguruma's \s and \w, inside brackets.
const (
	spaceClass = `\t-\r\x{85}\p{Z}`
	wordClass  = `\p{L}\p{M}\p{Nd}\p{Pc}`
)

// patternJSON is a pattern of tokenizer.json: a literal string or a
// regular expression.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// parsePattern reads the pattern of a Split pre-tokenizer at key.
func parsePattern(raw json.RawMessage, key string) (pattern, error) {
	p, err := decodePattern(raw, key)
	if err != nil {
		return nil, err
	}
	if p.String == nil && *p.Regex == gpt2Pattern {
		return gpt2SplitPattern{}, nil
	}
	re, err := p.compile(key)
	if err != nil {
		return nil, err
	}
	return regexPattern{re}, nil
}

// compile returns the pattern at key as a regular expression: its String
// matched literally, else its Regex (compileRegex).
func (p patternJSON) compile(key string) (*regexp.Regexp, error) {
	if p.String != nil {
		return regexp.MustCompile(regexp.QuoteMeta(*p.String)), nil
	}
	return compileRegex(*p.Regex, key+".Regex")
}

// decodePattern reads the pattern at key, which must be there and hold a
// String or a Regex.
func decodePattern(raw json.RawMessage, key string) (patternJSON, error) {
	var p patternJSON
	if isAbsent(raw) {
		return p, fmt.Errorf("%s: missing", key)
	}
	if err := decodeJSON(raw, key, &p); err != nil {
		return p, err
	}
	if p.String == nil && p.Regex == nil {
		return p, fmt.Errorf("%s: want {\"String\": ...} or {\"Regex\": ...}", key)
	}
	return p, nil
}

// compileRegex compiles the Oniguruma regular expression expr found at key.
func compileRegex(expr, key string) (*regexp.Regexp, error) {
	goExpr, err := goRegex(expr)
	if err != nil {
		return nil, fmt.Errorf("%s: regex %s: %w", key, quote(expr), err)
	}
	re, err := regexp.Compile(goExpr)
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			err = &regexError{se}
		}
		return nil, fmt.Errorf("%s: invalid regex %s: %w", key, quote(expr), err)
	}
	return re, nil
}

// regexError is a regexp syntax error told with at most maxQuoted
// characters of the expression.
type regexError struct{ err *syntax.Error }

func (e *regexError) Error() string { return string(e.err.Code) + ": " + quote(e.err.Expr) }
func (e *regexError) Unwrap() error { return e.err }

// goRegex rewrites an Oniguruma regular expression for Go's regexp.
func goRegex(expr string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == '\\' && i+1 < len(expr):
			i++
			e := expr[i]
			if rep, ok := classEscape(e, inClass); ok {
				b.WriteString(rep)
				continue
			}
			if e == 'u' && i+4 < len(expr) && isHex(expr[i+1:i+5]) {
				b.WriteString(`\x{` + expr[i+1:i+5] + "}")
				i += 4
				continue
			}
			if inClass && (e == 'S' || e == 'W' || e == 'H') {
				return "", fmt.Errorf("\\%c inside brackets is not supported", e)
			}
			b.WriteByte(c)
			b.WriteByte(e)
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			if i+1 < len(expr) && expr[i+1] == '^' {
				i++
				b.WriteByte('^')
			}
			if i+1 < len(expr) && expr[i+1] == ']' {
				i++
				b.WriteString(`\]`)
			}
		case c == '[' && inClass:
			if strings.HasPrefix(expr[i:], "[:") {
				end := strings.Index(expr[i:], ":]")
				if end < 0 {
					return "", errors.New("unclosed [: in brackets")
				}
				b.WriteString(expr[i : i+end+2])
				i += end + 1
				continue
			}
			return "", errors.New("nested brackets are not supported")
		case c == ']' && inClass:
			inClass = false
			b.WriteByte(c)
		case c == '(' && !inClass && strings.HasPrefix(expr[i:], "(?"):
			for _, look := range []string{"(?=", "(?!", "(?<=", "(?<!"} {
				if strings.HasPrefix(expr[i:], look) {
					return "", fmt.Errorf("lookaround %s is not supported (Go's regexp has none)", look)
				}
			}
			if strings.HasPrefix(expr[i:], "(?>") {
				return "", errors.New("atomic group (?> is not supported")
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// classEscape returns what an escape of Oniguruma's (\s, \d, \w, \h and
// their negations) is in Go's regexp, inside brackets or out.
func classEscape(e byte, inClass bool) (string, bool) {
	if inClass {
		switch e {
		case 's':
			return spaceClass, true
		case 'd':
			return `\p{Nd}`, true
		case 'D':
			return `\P{Nd}`, true
		case 'w':
			return wordClass, true
		case 'h':
			return `0-9a-fA-F`, true
		}
		return "", false
	}
	switch e {
	case 's':
		return "[" + spaceClass + "]", true
	case 'S':
		return "[^" + spaceClass + "]", true
	case 'd':
		return `\p{Nd}`, true
	case 'D':
		return `\P{Nd}`, true
	case 'w':
		return "[" + wordClass + "]", true
	case 'W':
		return "[^" + wordClass + "]", true
	case 'h':
		return `[0-9a-fA-F]`, true
	case 'H':
		return `[^0-9a-fA-F]`, true
	}
	return "", false
}

// isHex reports whether s is all hexadecimal digits.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
