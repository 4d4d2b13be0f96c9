package chattemplate

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
	"unicode"
)

// now is the clock of strftime_now; a variable for tests.
var now = time.Now

// globals are the names every template sees, as HF defines them.
var globals = map[string]any{
	"raise_exception": function(func(args []any, _ map[string]any) (any, error) {
		msg := "raise_exception"
		if len(args) > 0 {
			msg = str(args[0])
		}
		return nil, &TemplateError{Message: msg}
	}),
	"namespace": function(func(args []any, kwargs map[string]any) (any, error) {
		d := newDict()
		d.mutable = true
		for _, a := range args {
			if src, ok := a.(*dict); ok {
				for k, v := range src.All() {
					d.Set(k, v)
				}
			}
		}
		for _, k := range sortedKeys(kwargs) {
			d.Set(k, kwargs[k])
		}
		return d, nil
	}),
	"dict": function(func(_ []any, kwargs map[string]any) (any, error) {
		d := newDict()
		for _, k := range sortedKeys(kwargs) {
			d.Set(k, kwargs[k])
		}
		return d, nil
	}),
	"range": function(func(args []any, _ map[string]any) (any, error) {
		var b [3]int64
		b[2] = 1
		for i, a := range args {
			n, ok := a.(int64)
			if !ok || i > 2 {
				return nil, fmt.Errorf("range takes up to 3 integers")
			}
			b[i] = n
		}
		lo, hi, step := b[0], b[1], b[2]
		if len(args) == 1 {
			lo, hi = 0, b[0]
		}
		if step == 0 {
			return nil, fmt.Errorf("range step cannot be zero")
		}
		var out []any
		for i := lo; (step > 0 && i < hi) || (step < 0 && i > hi); i += step {
			if len(out) >= 1<<16 {
				return nil, fmt.Errorf("range is too long")
			}
			out = append(out, i)
		}
		return out, nil
	}),
	"strftime_now": function(func(args []any, _ map[string]any) (any, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("strftime_now takes one format")
		}
		return strftime(now(), str(args[0])), nil
	}),
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// strftime formats t by Python's strftime directives (the common ones).
func strftime(t time.Time, f string) string {
	repl := map[byte]string{
		'Y': "2006", 'm': "01", 'd': "02", 'H': "15", 'M': "04", 'S': "05",
		'b': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday", 'y': "06", 'p': "PM", 'Z': "MST", 'z': "-0700",
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch c := f[i]; {
		case c == '%':
			b.WriteByte('%')
		case c == 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case repl[c] != "":
			b.WriteString(t.Format(repl[c]))
		default:
			b.WriteByte('%')
			b.WriteByte(c)
		}
	}
	return b.String()
}

// method returns the method name of x (a string's or a dict's), or nil.
func method(x any, name string) function {
	switch v := x.(type) {
	case string:
		return stringMethod(v, name)
	case *dict:
		switch name {
		case "get":
			return func(args []any, _ map[string]any) (any, error) {
				if len(args) == 0 {
					return nil, fmt.Errorf("get needs a key")
				}
				if e, ok := v.Get(str(args[0])); ok {
					return e, nil
				}
				if len(args) > 1 {
					return args[1], nil
				}
				return nil, nil
			}
		case "items":
			return func([]any, map[string]any) (any, error) { return dictItems(v), nil }
		case "keys":
			return func([]any, map[string]any) (any, error) { return items(v) }
		case "values":
			return func([]any, map[string]any) (any, error) {
				out := make([]any, 0, v.Len())
				for _, e := range v.All() {
					out = append(out, e)
				}
				return out, nil
			}
		}
	}
	return nil
}

func dictItems(d *dict) []any {
	out := make([]any, 0, d.Len())
	for k, v := range d.All() {
		out = append(out, []any{k, v})
	}
	return out
}

func stringMethod(s, name string) function {
	strArg := func(args []any, i int, def string) string {
		if i < len(args) && args[i] != nil {
			return str(args[i])
		}
		return def
	}
	switch name {
	case "strip", "lstrip", "rstrip":
		return func(args []any, _ map[string]any) (any, error) {
			if len(args) > 0 && args[0] != nil {
				cut := str(args[0])
				switch name {
				case "lstrip":
					return strings.TrimLeft(s, cut), nil
				case "rstrip":
					return strings.TrimRight(s, cut), nil
				}
				return strings.Trim(s, cut), nil
			}
			switch name {
			case "lstrip":
				return strings.TrimLeftFunc(s, unicode.IsSpace), nil
			case "rstrip":
				return strings.TrimRightFunc(s, unicode.IsSpace), nil
			}
			return strings.TrimSpace(s), nil
		}
	case "startswith", "endswith":
		return func(args []any, _ map[string]any) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s needs an argument", name)
			}
			cands := []any{args[0]}
			if l, ok := args[0].([]any); ok {
				cands = l
			}
			for _, c := range cands {
				if (name == "startswith" && strings.HasPrefix(s, str(c))) || (name == "endswith" && strings.HasSuffix(s, str(c))) {
					return true, nil
				}
			}
			return false, nil
		}
	case "split":
		return func(args []any, _ map[string]any) (any, error) {
			var parts []string
			sep := strArg(args, 0, "")
			limit := -1
			if len(args) > 1 {
				if n, ok := args[1].(int64); ok && n >= 0 {
					limit = int(n) + 1
				}
			}
			if sep == "" {
				parts = strings.Fields(s)
			} else {
				parts = strings.SplitN(s, sep, limit)
			}
			out := make([]any, len(parts))
			for i, p := range parts {
				out[i] = p
			}
			return out, nil
		}
	case "upper":
		return func([]any, map[string]any) (any, error) { return strings.ToUpper(s), nil }
	case "lower":
		return func([]any, map[string]any) (any, error) { return strings.ToLower(s), nil }
	case "title":
		return func([]any, map[string]any) (any, error) { return title(s), nil }
	case "capitalize":
		return func([]any, map[string]any) (any, error) { return capitalize(s), nil }
	case "replace":
		return func(args []any, _ map[string]any) (any, error) {
			if len(args) < 2 {
				return nil, fmt.Errorf("replace needs two arguments")
			}
			n := -1
			if len(args) > 2 {
				if c, ok := args[2].(int64); ok {
					n = int(c)
				}
			}
			return strings.Replace(s, str(args[0]), str(args[1]), n), nil
		}
	case "find":
		return func(args []any, _ map[string]any) (any, error) {
			return int64(strings.Index(s, strArg(args, 0, ""))), nil
		}
	case "count":
		return func(args []any, _ map[string]any) (any, error) {
			return int64(strings.Count(s, strArg(args, 0, ""))), nil
		}
	case "join":
		return func(args []any, _ map[string]any) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("join needs a list")
			}
			return joinItems(args[0], s, "")
		}
	}
	return nil
}

func title(s string) string {
	var b strings.Builder
	prev := ' '
	for _, r := range s {
		if unicode.IsLetter(prev) {
			b.WriteRune(unicode.ToLower(r))
		} else {
			b.WriteRune(unicode.ToUpper(r))
		}
		prev = r
	}
	return b.String()
}

func capitalize(s string) string {
	for i, r := range s {
		return string(unicode.ToUpper(r)) + strings.ToLower(s[i+len(string(r)):])
	}
	return s
}

func joinItems(v any, sep, attr string) (any, error) {
	all, err := items(v)
	if err != nil {
		return nil, err
	}
	parts := make([]string, len(all))
	for i, e := range all {
		if attr != "" {
			e = attribute(e, attr)
		}
		parts[i] = str(e)
	}
	return strings.Join(parts, sep), nil
}

// toJSON is HF's tojson: json.dumps with ensure_ascii=False, keys in
// insertion order, and indent when given.
func toJSON(v any, indent int) (string, error) {
	var b strings.Builder
	if err := writeJSON(&b, v, indent, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeJSON(b *strings.Builder, v any, indent, depth int) error {
	newline := func(d int) {
		if indent > 0 {
			b.WriteString("\n" + strings.Repeat(" ", indent*d))
		}
	}
	sep := ", "
	if indent > 0 {
		sep = ","
	}
	switch x := v.(type) {
	case nil, undefined:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		fmt.Fprint(b, x)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Errorf("tojson: %v is not JSON", x)
		}
		b.WriteString(pyFloat(x))
	case string:
		enc, _ := json.Marshal(x)
		// Python's json.dumps does not escape <, > and &, as Go's does.
		s := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(enc))
		b.WriteString(s)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(sep)
			}
			newline(depth + 1)
			if err := writeJSON(b, e, indent, depth+1); err != nil {
				return err
			}
		}
		if len(x) > 0 {
			newline(depth)
		}
		b.WriteByte(']')
	case *dict:
		b.WriteByte('{')
		i := 0
		for k, v := range x.All() {
			if i > 0 {
				b.WriteString(sep)
			}
			newline(depth + 1)
			if err := writeJSON(b, k, indent, depth+1); err != nil {
				return err
			}
			b.WriteString(": ")
			if err := writeJSON(b, v, indent, depth+1); err != nil {
				return err
			}
			i++
		}
		if x.Len() > 0 {
			newline(depth)
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("tojson: %s is not JSON", typeName(v))
	}
	return nil
}

func applyFilter(name string, x any, args []any, kwargs map[string]any) (any, error) {
	arg := func(i int, key string) (any, bool) {
		if i < len(args) {
			return args[i], true
		}
		v, ok := kwargs[key]
		return v, ok
	}
	switch name {
	case "trim":
		return strings.TrimSpace(str(x)), nil
	case "tojson":
		indent := 0
		if v, ok := arg(0, "indent"); ok {
			if n, ok := v.(int64); ok {
				indent = int(n)
			}
		}
		return toJSON(x, indent)
	case "length", "count":
		switch v := x.(type) {
		case string:
			return int64(len([]rune(v))), nil
		case []any:
			return int64(len(v)), nil
		case *dict:
			return int64(v.Len()), nil
		case undefined, nil:
			return int64(0), nil
		}
		return nil, fmt.Errorf("%s has no length", typeName(x))
	case "upper":
		return strings.ToUpper(str(x)), nil
	case "lower":
		return strings.ToLower(str(x)), nil
	case "title":
		return title(str(x)), nil
	case "capitalize":
		return capitalize(str(x)), nil
	case "default", "d":
		def, _ := arg(0, "default_value")
		boolean, _ := arg(1, "boolean")
		if _, undef := x.(undefined); undef || (truthy(boolean) && !truthy(x)) {
			if def == nil && len(args) == 0 {
				return "", nil
			}
			return def, nil
		}
		return x, nil
	case "join":
		sep, _ := arg(0, "d")
		attr, _ := arg(1, "attribute")
		s, a := "", ""
		if sep != nil {
			s = str(sep)
		}
		if attr != nil {
			a = str(attr)
		}
		return joinItems(x, s, a)
	case "first", "last":
		all, err := items(x)
		if err != nil {
			return nil, err
		}
		if len(all) == 0 {
			return undefined{}, nil
		}
		if name == "first" {
			return all[0], nil
		}
		return all[len(all)-1], nil
	case "list":
		if d, ok := x.(*dict); ok {
			return items(d)
		}
		return items(x)
	case "string":
		return str(x), nil
	case "safe", "e", "escape":
		return x, nil
	case "int":
		switch v := x.(type) {
		case int64:
			return v, nil
		case float64:
			return int64(v), nil
		case bool:
			if v {
				return int64(1), nil
			}
			return int64(0), nil
		case string:
			var n int64
			if _, err := fmt.Sscan(strings.TrimSpace(v), &n); err == nil {
				return n, nil
			}
		}
		return int64(0), nil
	case "float":
		if f, ok := number(x); ok {
			return f, nil
		}
		var f float64
		if s, ok := x.(string); ok {
			if _, err := fmt.Sscan(strings.TrimSpace(s), &f); err == nil {
				return f, nil
			}
		}
		return 0.0, nil
	case "abs":
		switch v := x.(type) {
		case int64:
			if v < 0 {
				return -v, nil
			}
			return v, nil
		case float64:
			return math.Abs(v), nil
		}
		return nil, fmt.Errorf("abs of %s", typeName(x))
	case "replace":
		if len(args) < 2 {
			return nil, fmt.Errorf("replace needs two arguments")
		}
		return strings.ReplaceAll(str(x), str(args[0]), str(args[1])), nil
	case "reverse":
		if s, ok := x.(string); ok {
			rs := []rune(s)
			for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
				rs[i], rs[j] = rs[j], rs[i]
			}
			return string(rs), nil
		}
		all, err := items(x)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(all))
		for i, e := range all {
			out[len(all)-1-i] = e
		}
		return out, nil
	case "items":
		d, ok := x.(*dict)
		if !ok {
			return nil, fmt.Errorf("items of %s", typeName(x))
		}
		return dictItems(d), nil
	case "indent":
		width := int64(4)
		if v, ok := arg(0, "width"); ok {
			if n, ok := v.(int64); ok {
				width = n
			}
		}
		first, _ := arg(1, "first")
		pad := strings.Repeat(" ", int(max(0, min(width, 64))))
		lines := strings.Split(str(x), "\n")
		for i := range lines {
			if (i > 0 || truthy(first)) && lines[i] != "" {
				lines[i] = pad + lines[i]
			}
		}
		return strings.Join(lines, "\n"), nil
	case "map", "select", "reject", "selectattr", "rejectattr":
		return filterSeq(name, x, args, kwargs)
	case "sort", "unique", "min", "max", "sum":
		return orderSeq(name, x, kwargs)
	}
	return nil, fmt.Errorf("unknown filter %q", name)
}

// filterSeq implements map, select, reject, selectattr and rejectattr.
func filterSeq(name string, x any, args []any, kwargs map[string]any) (any, error) {
	all, err := items(x)
	if err != nil {
		return nil, err
	}
	var out []any
	if name == "map" {
		attr, byAttr := kwargs["attribute"]
		for _, e := range all {
			switch {
			case byAttr:
				out = append(out, attribute(e, str(attr)))
			case len(args) > 0:
				v, err := applyFilter(str(args[0]), e, args[1:], nil)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			default:
				return nil, fmt.Errorf("map needs a filter name or attribute=")
			}
		}
		return out, nil
	}
	keep := name == "select" || name == "selectattr"
	for _, e := range all {
		subject, rest := e, args
		if strings.HasSuffix(name, "attr") {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s needs an attribute name", name)
			}
			subject, rest = attribute(e, str(args[0])), args[1:]
		}
		ok := truthy(subject)
		if len(rest) > 0 {
			if ok, err = applyTest(str(rest[0]), subject, rest[1:]); err != nil {
				return nil, err
			}
		}
		if ok == keep {
			out = append(out, e)
		}
	}
	return out, nil
}

// orderSeq implements sort, unique, min, max and sum.
func orderSeq(name string, x any, kwargs map[string]any) (any, error) {
	all, err := items(x)
	if err != nil {
		return nil, err
	}
	key := func(e any) any {
		if a, ok := kwargs["attribute"]; ok {
			return attribute(e, str(a))
		}
		return e
	}
	switch name {
	case "sort":
		out := append([]any(nil), all...)
		var serr error
		sort.SliceStable(out, func(i, j int) bool {
			l, err := less(key(out[i]), key(out[j]))
			if err != nil {
				serr = err
			}
			return l
		})
		if truthy(kwargs["reverse"]) {
			for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
				out[i], out[j] = out[j], out[i]
			}
		}
		return out, serr
	case "unique":
		var out []any
		for _, e := range all {
			seen := false
			for _, o := range out {
				seen = seen || equal(key(o), key(e))
			}
			if !seen {
				out = append(out, e)
			}
		}
		return out, nil
	case "sum":
		var total any = int64(0)
		for _, e := range all {
			if total, err = arithmetic("+", total, key(e)); err != nil {
				return nil, err
			}
		}
		return total, nil
	}
	if len(all) == 0 {
		return undefined{}, nil
	}
	best := all[0]
	for _, e := range all[1:] {
		l, err := less(key(e), key(best))
		if err != nil {
			return nil, err
		}
		if l == (name == "min") {
			best = e
		}
	}
	return best, nil
}

func applyTest(name string, x any, args []any) (bool, error) {
	_, undef := x.(undefined)
	argN := func() (any, error) {
		if len(args) == 0 {
			return nil, fmt.Errorf("test %q needs an argument", name)
		}
		return args[0], nil
	}
	switch name {
	case "defined":
		return !undef, nil
	case "undefined":
		return undef, nil
	case "none":
		return x == nil, nil
	case "string":
		_, ok := x.(string)
		return ok, nil
	case "number":
		switch x.(type) {
		case int64, float64:
			return true, nil
		}
		return false, nil
	case "integer":
		_, ok := x.(int64)
		return ok, nil
	case "float":
		_, ok := x.(float64)
		return ok, nil
	case "mapping":
		_, ok := x.(*dict)
		return ok, nil
	case "sequence", "iterable":
		switch x.(type) {
		case string, []any, *dict:
			return true, nil
		}
		return false, nil
	case "boolean":
		_, ok := x.(bool)
		return ok, nil
	case "true":
		return x == true, nil
	case "false":
		return x == false, nil
	case "callable":
		_, ok := x.(function)
		return ok, nil
	case "even", "odd":
		n, ok := x.(int64)
		return ok && (n%2 == 0) == (name == "even"), nil
	case "divisibleby":
		a, err := argN()
		if err != nil {
			return false, err
		}
		n, ok1 := x.(int64)
		d, ok2 := a.(int64)
		return ok1 && ok2 && d != 0 && n%d == 0, nil
	case "eq", "equalto", "==", "sameas":
		a, err := argN()
		return err == nil && equal(x, a), err
	case "ne", "!=":
		a, err := argN()
		return err == nil && !equal(x, a), err
	case "in":
		a, err := argN()
		if err != nil {
			return false, err
		}
		return contains(a, x)
	case "lower", "upper":
		s, ok := x.(string)
		return ok && ((name == "lower" && s == strings.ToLower(s)) || (name == "upper" && s == strings.ToUpper(s))), nil
	}
	return false, fmt.Errorf("unknown test %q", name)
}
