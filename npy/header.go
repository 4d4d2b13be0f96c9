package npy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
)

// magic starts every .npy file; the format version's two bytes follow.
const magic = "\x93NUMPY"

const (
	// maxHeaderLen bounds the header that Read accepts. NumPy's own limit
	// is 10000 bytes unless told otherwise; this one leaves room for
	// generous padding while keeping a corrupt length from allocating
	// gigabytes.
	maxHeaderLen = 1 << 20
	// maxDepth bounds the nesting of Python literals in a header.
	maxDepth = 8
	// headerAlign is the alignment NumPy gives to the start of the data.
	headerAlign = 64
	// growthAxisMaxDigits is the room NumPy leaves in a header so that the
	// first axis can grow in place (numpy.lib.format.GROWTH_AXIS_MAX_DIGITS).
	growthAxisMaxDigits = 21
)

// header is what the dict literal of an .npy header says.
type header struct {
	elem  dtype.Type
	shape []int64
}

// encodeHeader returns the magic, version, length and padded header text
// for an array, as numpy.save writes them: version 1.0 when the header fits
// its 16-bit length and 2.0 otherwise, or 2.0 at least when minMajor is 2.
func encodeHeader(elem dtype.Type, shape []int64, minMajor byte) []byte {
	var sb strings.Builder
	sb.WriteString("{'descr': '")
	sb.WriteString(elem.Descr())
	sb.WriteString("', 'fortran_order': False, 'shape': (")
	for i, d := range shape {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.FormatInt(d, 10))
	}
	if len(shape) == 1 {
		sb.WriteByte(',')
	}
	sb.WriteString("), }")
	if len(shape) > 0 {
		sb.WriteString(strings.Repeat(" ", growthAxisMaxDigits-len(strconv.FormatInt(shape[0], 10))))
	}
	text := sb.String()

	hlen := len(text) + 1 // the final newline
	major := minMajor
	if major < 1 {
		major = 1
	}
	prefix := len(magic) + 2 + 2
	pad := headerAlign - (prefix+hlen)%headerAlign
	if major == 1 && hlen+pad > 0xffff {
		major = 2
	}
	if major >= 2 {
		prefix = len(magic) + 2 + 4
		pad = headerAlign - (prefix+hlen)%headerAlign
	}

	b := make([]byte, 0, prefix+hlen+pad)
	b = append(b, magic...)
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(hlen+pad))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(hlen+pad))
	}
	b = append(b, text...)
	b = append(b, strings.Repeat(" ", pad)...)
	return append(b, '\n')
}

// parseHeader reads the dict literal of an .npy header.
func parseHeader(text string) (header, error) {
	p := &pyParser{s: text}
	v, err := p.value(0)
	if err != nil {
		return header{}, err
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return header{}, fmt.Errorf("header has %q after its dict", clip(p.s[p.i:]))
	}
	d, ok := v.(pyDict)
	if !ok {
		return header{}, errors.New("header is not a dict")
	}
	var h header
	seen := map[string]bool{}
	for i, k := range d.keys {
		if seen[k] {
			return header{}, fmt.Errorf("header repeats key %q", k)
		}
		seen[k] = true
		switch val := d.values[i]; k {
		case "descr":
			s, ok := val.(string)
			if !ok {
				return header{}, fmt.Errorf("structured or non-string dtype %s is not supported", describe(val))
			}
			if h.elem, err = parseDescr(s); err != nil {
				return header{}, err
			}
		case "fortran_order":
			b, ok := val.(bool)
			if !ok {
				return header{}, fmt.Errorf("fortran_order is %s, want True or False", describe(val))
			}
			if b {
				return header{}, errors.New("fortran_order is True: only C-order arrays are supported; save np.ascontiguousarray(arr)")
			}
		case "shape":
			t, ok := val.(pyTuple)
			if !ok {
				return header{}, fmt.Errorf("shape is %s, want a tuple", describe(val))
			}
			h.shape = make([]int64, len(t))
			for j, e := range t {
				n, ok := e.(int64)
				if !ok || n < 0 {
					return header{}, fmt.Errorf("shape %s: dimension %d is %s, want a non-negative integer", formatTuple(t), j, describe(e))
				}
				h.shape[j] = n
			}
		default:
			return header{}, fmt.Errorf("header has unexpected key %q", k)
		}
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return header{}, fmt.Errorf("header lacks key %q", k)
		}
	}
	return h, nil
}

// The Python values that a header may hold: string, int64, bool, nil,
// pyTuple, pyList and pyDict.
type (
	pyTuple []any
	pyList  []any
	pyDict  struct {
		keys   []string
		values []any
	}
)

// pyParser parses the subset of Python literals that NumPy writes in
// headers (numpy uses ast.literal_eval).
type pyParser struct {
	s string
	i int
}

func (p *pyParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *pyParser) errorf(format string, args ...any) error {
	return fmt.Errorf("header is not a valid Python literal at byte %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *pyParser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.errorf("nested too deeply")
	}
	p.skipSpace()
	if p.i >= len(p.s) {
		return nil, p.errorf("unexpected end")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.dict(depth)
	case c == '(':
		items, tuple, err := p.seq(depth, ')')
		if err != nil {
			return nil, err
		}
		if !tuple && len(items) == 1 {
			return items[0], nil // (x) is x, not a tuple
		}
		return pyTuple(items), nil
	case c == '[':
		items, _, err := p.seq(depth, ']')
		return pyList(items), err
	case c == '\'' || c == '"':
		return p.str()
	case c == '-' || c == '+' || (c >= '0' && c <= '9'):
		return p.int()
	default:
		start := p.i
		for p.i < len(p.s) && isIdent(p.s[p.i]) {
			p.i++
		}
		switch word := p.s[start:p.i]; word {
		case "True":
			return true, nil
		case "False":
			return false, nil
		case "None":
			return nil, nil
		}
		p.i = start
		return nil, p.errorf("unexpected %q", clip(p.s[p.i:]))
	}
}

func isIdent(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// seq parses the items of a tuple or list up to its closing bracket. tuple
// reports whether a comma was seen, which makes (x,) a tuple.
func (p *pyParser) seq(depth int, end byte) (items []any, tuple bool, err error) {
	p.i++ // the opening bracket
	for {
		p.skipSpace()
		if p.i < len(p.s) && p.s[p.i] == end {
			p.i++
			return items, tuple || len(items) == 0, nil
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, false, err
		}
		items = append(items, v)
		p.skipSpace()
		if p.i >= len(p.s) {
			return nil, false, p.errorf("unexpected end")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
			tuple = true
		case end:
		default:
			return nil, false, p.errorf("want ',' or %q, got %q", end, clip(p.s[p.i:]))
		}
	}
}

func (p *pyParser) dict(depth int) (any, error) {
	p.i++ // '{'
	var d pyDict
	for {
		p.skipSpace()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return d, nil
		}
		k, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		key, ok := k.(string)
		if !ok {
			return nil, p.errorf("dict key is %s, want a string", describe(k))
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.errorf("want ':' after key %q", key)
		}
		p.i++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		d.keys = append(d.keys, key)
		d.values = append(d.values, v)
		p.skipSpace()
		if p.i >= len(p.s) {
			return nil, p.errorf("unexpected end")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
		default:
			return nil, p.errorf("want ',' or '}', got %q", clip(p.s[p.i:]))
		}
	}
}

// str parses a quoted string. Backslash escapes the next byte; the escapes
// that name other characters (\n, \x41) do not occur in dtype names and are
// kept as written.
func (p *pyParser) str() (any, error) {
	q := p.s[p.i]
	p.i++
	var sb strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == q:
			return sb.String(), nil
		case c == '\\' && p.i < len(p.s):
			if e := p.s[p.i]; e == '\\' || e == '\'' || e == '"' {
				sb.WriteByte(e)
			} else {
				sb.WriteByte('\\')
				sb.WriteByte(e)
			}
			p.i++
		case c == '\n':
			return nil, p.errorf("newline in string")
		default:
			sb.WriteByte(c)
		}
	}
	return nil, p.errorf("unterminated string")
}

// int parses a decimal integer, with the L suffix that Python 2 wrote.
func (p *pyParser) int() (any, error) {
	start := p.i
	if p.s[p.i] == '-' || p.s[p.i] == '+' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	if p.i == digits {
		return nil, p.errorf("sign without digits")
	}
	text := p.s[start:p.i]
	if p.i < len(p.s) && (p.s[p.i] == 'L' || p.s[p.i] == 'l') {
		p.i++
	}
	if p.i < len(p.s) && (isIdent(p.s[p.i]) || p.s[p.i] == '.') {
		return nil, p.errorf("bad number %q", clip(p.s[start:]))
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return nil, p.errorf("integer %s is out of range", clip(text))
	}
	return n, nil
}

// describe names a Python value for an error message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case string:
		return strconv.Quote(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case bool:
		if v {
			return "True"
		}
		return "False"
	case pyTuple:
		return formatTuple(v)
	case pyList:
		return "a list"
	case pyDict:
		return "a dict"
	}
	return fmt.Sprintf("%T", v)
}

func formatTuple(t pyTuple) string {
	parts := make([]string, len(t))
	for i, e := range t {
		parts[i] = describe(e)
	}
	if len(t) == 1 {
		return "(" + parts[0] + ",)"
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// clip shortens s for an error message.
func clip(s string) string {
	const n = 24
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
