package chattemplate

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// TemplateError is the error that raise_exception("...") in a template
// gives: the template refused its input (roles out of order, say).
type TemplateError struct{ Message string }

func (e *TemplateError) Error() string { return "chattemplate: " + e.Message }

// Render renders the template with vars (messages, bos_token,
// add_generation_prompt, ...). Go maps, slices, strings, numbers and bools
// may be given; map keys are seen in sorted order.
func (t *Template) Render(vars map[string]any) (string, error) {
	sc := &scope{vars: map[string]any{}}
	for k, v := range globals {
		sc.vars[k] = v
	}
	for k, v := range vars {
		sc.vars[k] = fromGo(v)
	}
	var b strings.Builder
	r := &renderer{out: &b, steps: new(int)}
	if err := r.nodes(t.body, sc); err != nil {
		if errors.Is(err, errBreak) || errors.Is(err, errContinue) {
			return "", errorAt(0, "break or continue outside a loop")
		}
		return "", err
	}
	return b.String(), nil
}

type scope struct {
	vars   map[string]any
	parent *scope
}

func (s *scope) lookup(n string) any {
	for ; s != nil; s = s.parent {
		if v, ok := s.vars[n]; ok {
			return v
		}
	}
	return undefined{}
}

type renderer struct {
	out   *strings.Builder
	steps *int // loop iterations so far, shared with nested renderers
}

// Limits of one Render, so that no template runs away.
const (
	maxOutput = 16 << 20
	maxSteps  = 100000
)

var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

func (r *renderer) nodes(ns []node, sc *scope) error {
	for _, n := range ns {
		if err := r.node(n, sc); err != nil {
			return err
		}
	}
	return nil
}

func (r *renderer) node(n node, sc *scope) error {
	switch n := n.(type) {
	case textNode:
		r.out.WriteString(string(n))
	case exprNode:
		v, err := eval(n.e, sc)
		if err != nil {
			return wrapLine(err, n.line)
		}
		r.out.WriteString(str(v))
		if r.out.Len() > maxOutput {
			return errorAt(n.line, "the output is over %d bytes", maxOutput)
		}
	case ifNode:
		for i, c := range n.conds {
			v, err := eval(c, sc)
			if err != nil {
				return err
			}
			if truthy(v) {
				return r.nodes(n.bodies[i], sc)
			}
		}
		if len(n.bodies) > len(n.conds) {
			return r.nodes(n.bodies[len(n.conds)], sc)
		}
	case forNode:
		return r.forLoop(n, sc)
	case setNode:
		return r.set(n, sc)
	case loopControl:
		if n == "break" {
			return errBreak
		}
		return errContinue
	}
	return nil
}

func (r *renderer) set(n setNode, sc *scope) error {
	var v any
	if n.body != nil {
		sub := &renderer{out: &strings.Builder{}, steps: r.steps}
		if err := sub.nodes(n.body, sc); err != nil {
			return err
		}
		v = sub.out.String()
	} else {
		var err error
		if v, err = eval(n.value, sc); err != nil {
			return wrapLine(err, n.line)
		}
	}
	if n.attr == "" {
		sc.vars[n.name] = v
		return nil
	}
	ns, ok := sc.lookup(n.name).(*dict)
	if !ok || !ns.mutable {
		return errorAt(n.line, "set %s.%s: %s is not a namespace()", n.name, n.attr, n.name)
	}
	ns.Set(n.attr, v)
	return nil
}

func (r *renderer) forLoop(n forNode, sc *scope) error {
	seq, err := eval(n.iter, sc)
	if err != nil {
		return wrapLine(err, n.line)
	}
	all, err := items(seq)
	if err != nil {
		return errorAt(n.line, "for: %v", err)
	}
	inner := &scope{parent: sc}
	bind := func(v any) error {
		if len(n.vars) == 1 {
			inner.vars[n.vars[0]] = v
			return nil
		}
		parts, err := items(v)
		if err != nil || len(parts) != len(n.vars) {
			return errorAt(n.line, "for: cannot unpack %s into %d names", typeName(v), len(n.vars))
		}
		for i, name := range n.vars {
			inner.vars[name] = parts[i]
		}
		return nil
	}
	// The filter ("for x in xs if cond") decides which items the loop
	// sees, before loop.length and the like are counted.
	kept := all
	if n.cond != nil {
		kept = nil
		for _, v := range all {
			inner.vars = map[string]any{}
			if err := bind(v); err != nil {
				return err
			}
			c, err := eval(n.cond, inner)
			if err != nil {
				return wrapLine(err, n.line)
			}
			if truthy(c) {
				kept = append(kept, v)
			}
		}
	}
	if len(kept) == 0 {
		return r.nodes(n.els, sc)
	}
	for i, v := range kept {
		if *r.steps++; *r.steps > maxSteps {
			return errorAt(n.line, "over %d loop iterations", maxSteps)
		}
		inner.vars = map[string]any{"loop": loopVar(kept, i)}
		if err := bind(v); err != nil {
			return err
		}
		err := r.nodes(n.body, inner)
		if errors.Is(err, errBreak) {
			break
		}
		if err != nil && !errors.Is(err, errContinue) {
			return err
		}
	}
	return nil
}

func loopVar(all []any, i int) *dict {
	n := len(all)
	d := newDict()
	d.Set("index", int64(i+1))
	d.Set("index0", int64(i))
	d.Set("revindex", int64(n-i))
	d.Set("revindex0", int64(n-i-1))
	d.Set("first", i == 0)
	d.Set("last", i == n-1)
	d.Set("length", int64(n))
	d.Set("previtem", undefined{})
	d.Set("nextitem", undefined{})
	if i > 0 {
		d.Set("previtem", all[i-1])
	}
	if i < n-1 {
		d.Set("nextitem", all[i+1])
	}
	d.Set("cycle", function(func(args []any, _ map[string]any) (any, error) {
		if len(args) == 0 {
			return nil, fmt.Errorf("loop.cycle needs at least one value")
		}
		return args[i%len(args)], nil
	}))
	return d
}

// wrapLine gives an evaluation error the line of its tag, unless it is a
// template's own raise_exception or already has one.
func wrapLine(err error, line int) error {
	var te *TemplateError
	if errors.As(err, &te) || strings.HasPrefix(err.Error(), "chattemplate: line ") {
		return err
	}
	return errorAt(line, "%w", err)
}

func eval(e expr, sc *scope) (any, error) {
	switch e := e.(type) {
	case literal:
		return e.v, nil
	case name:
		return sc.lookup(string(e)), nil
	case listLit:
		out := make([]any, len(e))
		for i, x := range e {
			v, err := eval(x, sc)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case dictLit:
		d := newDict()
		for i := range e.keys {
			k, err := eval(e.keys[i], sc)
			if err != nil {
				return nil, err
			}
			v, err := eval(e.values[i], sc)
			if err != nil {
				return nil, err
			}
			d.Set(str(k), v)
		}
		return d, nil
	case getattr:
		x, err := eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		return attribute(x, e.attr), nil
	case getitem:
		x, err := eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		k, err := eval(e.key, sc)
		if err != nil {
			return nil, err
		}
		return item(x, k)
	case slice:
		return evalSlice(e, sc)
	case call:
		fn, err := eval(e.fn, sc)
		if err != nil {
			return nil, err
		}
		f, ok := fn.(function)
		if !ok {
			return nil, fmt.Errorf("%s is not callable", describeExpr(e.fn))
		}
		args, kwargs, err := evalArgs(e.args, e.kwargs, sc)
		if err != nil {
			return nil, err
		}
		return f(args, kwargs)
	case filter:
		x, err := eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		args, kwargs, err := evalArgs(e.args, e.kwargs, sc)
		if err != nil {
			return nil, err
		}
		return applyFilter(e.name, x, args, kwargs)
	case test:
		x, err := eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		args, _, err := evalArgs(e.args, nil, sc)
		if err != nil {
			return nil, err
		}
		ok, err := applyTest(e.name, x, args)
		return ok != e.negate, err
	case unary:
		x, err := eval(e.x, sc)
		if err != nil {
			return nil, err
		}
		switch e.op {
		case "not":
			return !truthy(x), nil
		case "-":
			switch n := x.(type) {
			case int64:
				return -n, nil
			case float64:
				return -n, nil
			}
			return nil, fmt.Errorf("cannot negate %s", typeName(x))
		}
		return x, nil
	case binary:
		return evalBinary(e, sc)
	case cond:
		t, err := eval(e.test, sc)
		if err != nil {
			return nil, err
		}
		if truthy(t) {
			return eval(e.yes, sc)
		}
		return eval(e.no, sc)
	}
	return nil, fmt.Errorf("unknown expression %T", e)
}

func describeExpr(e expr) string {
	switch e := e.(type) {
	case name:
		return string(e)
	case getattr:
		return describeExpr(e.x) + "." + e.attr
	}
	return "the value"
}

func evalArgs(args []expr, kwargs map[string]expr, sc *scope) ([]any, map[string]any, error) {
	out := make([]any, len(args))
	for i, a := range args {
		v, err := eval(a, sc)
		if err != nil {
			return nil, nil, err
		}
		out[i] = v
	}
	var kw map[string]any
	for k, a := range kwargs {
		v, err := eval(a, sc)
		if err != nil {
			return nil, nil, err
		}
		if kw == nil {
			kw = map[string]any{}
		}
		kw[k] = v
	}
	return out, kw, nil
}

// attribute is x.name: a dict's entry, else a method of strings and dicts.
func attribute(x any, name string) any {
	if d, ok := x.(*dict); ok {
		if v, ok := d.Get(name); ok {
			return v
		}
	}
	if m := method(x, name); m != nil {
		return m
	}
	return undefined{}
}

// item is x[k]: a dict's entry (else a method, as Jinja's getitem falls
// back to attributes), a list's or a string's element.
func item(x, k any) (any, error) {
	switch c := x.(type) {
	case *dict:
		if v, ok := c.Get(str(k)); ok {
			return v, nil
		}
		if s, ok := k.(string); ok {
			return attribute(x, s), nil
		}
		return undefined{}, nil
	case []any:
		i, ok := k.(int64)
		if !ok {
			return nil, fmt.Errorf("list index must be an integer, not %s", typeName(k))
		}
		j, ok := index(i, len(c))
		if !ok {
			return undefined{}, nil
		}
		return c[j], nil
	case string:
		i, ok := k.(int64)
		if !ok {
			return nil, fmt.Errorf("string index must be an integer, not %s", typeName(k))
		}
		rs := []rune(c)
		j, ok := index(i, len(rs))
		if !ok {
			return undefined{}, nil
		}
		return string(rs[j]), nil
	case undefined, nil:
		return undefined{}, nil
	}
	return nil, fmt.Errorf("%s has no items", typeName(x))
}

func evalSlice(e slice, sc *scope) (any, error) {
	x, err := eval(e.x, sc)
	if err != nil {
		return nil, err
	}
	var bound [3]*int64
	for i, b := range []expr{e.lo, e.hi, e.step} {
		if b == nil {
			continue
		}
		v, err := eval(b, sc)
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("slice bounds must be integers, not %s", typeName(v))
		}
		bound[i] = &n
	}
	var elems []any
	s, isString := x.(string)
	switch c := x.(type) {
	case []any:
		elems = c
	case string:
		for _, r := range c {
			elems = append(elems, string(r))
		}
	default:
		return nil, fmt.Errorf("cannot slice %s", typeName(x))
	}
	_ = s
	picked := pySlice(len(elems), bound[0], bound[1], bound[2])
	if picked == nil {
		return nil, fmt.Errorf("slice step cannot be zero")
	}
	out := make([]any, 0, len(picked))
	for _, i := range picked {
		out = append(out, elems[i])
	}
	if isString {
		var b strings.Builder
		for _, v := range out {
			b.WriteString(v.(string))
		}
		return b.String(), nil
	}
	return out, nil
}

// pySlice returns the indices that Python's seq[lo:hi:step] takes from a
// sequence of n, or nil for a zero step.
func pySlice(n int, lo, hi, step *int64) []int {
	st := int64(1)
	if step != nil {
		st = *step
	}
	if st == 0 {
		return nil
	}
	clamp := func(p *int64, def int64, lowest, highest int64) int64 {
		if p == nil {
			return def
		}
		v := *p
		if v < 0 {
			v += int64(n)
		}
		return max(lowest, min(v, highest))
	}
	out := []int{}
	if st > 0 {
		a, b := clamp(lo, 0, 0, int64(n)), clamp(hi, int64(n), 0, int64(n))
		for i := a; i < b; i += st {
			out = append(out, int(i))
		}
	} else {
		a, b := clamp(lo, int64(n)-1, -1, int64(n)-1), clamp(hi, -1, -1, int64(n)-1)
		if hi != nil && *hi < 0 && *hi+int64(n) < 0 {
			b = -1
		}
		for i := a; i > b; i += st {
			out = append(out, int(i))
		}
	}
	return out
}

func evalBinary(e binary, sc *scope) (any, error) {
	l, err := eval(e.l, sc)
	if err != nil {
		return nil, err
	}
	switch e.op { // short-circuit: Python returns the deciding operand
	case "and":
		if !truthy(l) {
			return l, nil
		}
		return eval(e.r, sc)
	case "or":
		if truthy(l) {
			return l, nil
		}
		return eval(e.r, sc)
	}
	r, err := eval(e.r, sc)
	if err != nil {
		return nil, err
	}
	switch e.op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "<":
		return less(l, r)
	case ">":
		return less(r, l)
	case "<=":
		lt, err := less(r, l)
		return !lt, err
	case ">=":
		lt, err := less(l, r)
		return !lt, err
	case "in", "not in":
		in, err := contains(r, l)
		return in == (e.op == "in"), err
	case "~":
		return str(l) + str(r), nil
	case "+":
		switch a := l.(type) {
		case string:
			if b, ok := r.(string); ok {
				return a + b, nil
			}
		case []any:
			if b, ok := r.([]any); ok {
				return append(append([]any{}, a...), b...), nil
			}
		}
	case "*":
		if s, ok := l.(string); ok {
			if n, ok := r.(int64); ok && n >= 0 && int64(len(s))*n <= maxOutput {
				return strings.Repeat(s, int(n)), nil
			}
		}
	}
	return arithmetic(e.op, l, r)
}

func arithmetic(op string, l, r any) (any, error) {
	li, lInt := l.(int64)
	ri, rInt := r.(int64)
	lf, lok := number(l)
	rf, rok := number(r)
	if !lok || !rok {
		return nil, fmt.Errorf("unsupported operand types for %s: %s and %s", op, typeName(l), typeName(r))
	}
	ints := lInt && rInt
	switch op {
	case "+":
		if ints {
			return li + ri, nil
		}
		return lf + rf, nil
	case "-":
		if ints {
			return li - ri, nil
		}
		return lf - rf, nil
	case "*":
		if ints {
			return li * ri, nil
		}
		return lf * rf, nil
	case "/":
		if rf == 0 {
			return nil, fmt.Errorf("division by zero")
		}
		return lf / rf, nil
	case "//", "%":
		if rf == 0 {
			return nil, fmt.Errorf("division by zero")
		}
		q := math.Floor(lf / rf)
		if op == "%" {
			if ints {
				m := li % ri
				if m != 0 && (m < 0) != (ri < 0) {
					m += ri
				}
				return m, nil
			}
			return lf - q*rf, nil
		}
		if ints {
			return int64(q), nil
		}
		return q, nil
	case "**":
		if ints && ri >= 0 {
			return int64(math.Pow(lf, rf)), nil
		}
		return math.Pow(lf, rf), nil
	}
	return nil, fmt.Errorf("unknown operator %s", op)
}

// contains is Python's "x in c".
func contains(c, x any) (bool, error) {
	switch c := c.(type) {
	case string:
		s, ok := x.(string)
		if !ok {
			return false, fmt.Errorf("'in <string>' needs a string on the left, not %s", typeName(x))
		}
		return strings.Contains(c, s), nil
	case []any:
		for _, e := range c {
			if equal(e, x) {
				return true, nil
			}
		}
		return false, nil
	case *dict:
		_, ok := c.Get(str(x))
		return ok, nil
	case undefined, nil:
		return false, nil
	}
	return false, fmt.Errorf("%s does not support 'in'", typeName(c))
}
