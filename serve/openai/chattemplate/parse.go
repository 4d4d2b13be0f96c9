package chattemplate

import (
	"slices"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// Template is a parsed chat template. It is safe for concurrent use.
type Template struct {
	body []node
}

// Parse parses a chat template. Tags and syntax that the package does not
// implement are refused with the line they are on.
func Parse(src string) (*Template, error) {
	segs, err := split(src)
	if err != nil {
		return nil, err
	}
	p := &parser{segs: segs}
	body, end, err := p.block()
	if err != nil {
		return nil, err
	}
	if end != "" {
		return nil, errorAt(p.line, "unexpected {%% %s %%}", end)
	}
	return &Template{body: body}, nil
}

func errorAt(line int, format string, args ...any) error {
	return pkgerr.Errorf("chattemplate", "line %d: "+format, append([]any{line}, args...)...)
}

// Nodes of the template.
type (
	node     interface{}
	textNode string
	exprNode struct {
		e    expr
		line int
	}
	ifNode struct {
		conds  []expr
		bodies [][]node // len(conds) bodies, then the else body if any
	}
	forNode struct {
		vars       []string
		iter, cond expr
		body, els  []node
		line       int
	}
	setNode struct {
		name, attr string // attr: set name.attr (a namespace)
		value      expr
		body       []node // {% set x %}...{% endset %}
		line       int
	}
	loopControl string // "break" or "continue"
)

// Expressions.
type (
	expr    interface{}
	literal struct{ v any }
	name    string
	listLit []expr
	dictLit struct{ keys, values []expr }
	getattr struct {
		x    expr
		attr string
	}
	getitem struct{ x, key expr }
	slice   struct{ x, lo, hi, step expr }
	call    struct {
		fn     expr
		args   []expr
		kwargs map[string]expr
		line   int
	}
	filter struct {
		x      expr
		name   string
		args   []expr
		kwargs map[string]expr
		line   int
	}
	test struct {
		x      expr
		name   string
		args   []expr
		negate bool
		line   int
	}
	unary struct {
		op string
		x  expr
	}
	binary struct {
		op   string
		l, r expr
		line int
	}
	cond struct{ test, yes, no expr }
)

type parser struct {
	segs []segment
	pos  int
	line int
}

// block parses nodes up to a statement that ends a block (endif, else,
// ...), which it returns with its tokens left in p.rest.
func (p *parser) block() ([]node, string, error) {
	var nodes []node
	for p.pos < len(p.segs) {
		s := p.segs[p.pos]
		p.pos++
		p.line = s.line
		switch s.kind {
		case 't':
			nodes = append(nodes, textNode(s.text))
		case '{':
			toks, err := tokenize(s.text, s.line)
			if err != nil {
				return nil, "", err
			}
			e, err := parseWhole(toks, s.line)
			if err != nil {
				return nil, "", err
			}
			nodes = append(nodes, exprNode{e, s.line})
		case '%':
			toks, err := tokenize(s.text, s.line)
			if err != nil {
				return nil, "", err
			}
			if len(toks) == 0 || toks[0].kind != 'n' {
				return nil, "", errorAt(s.line, "empty or malformed statement {%%%s%%}", s.text)
			}
			n, end, err := p.statement(toks[0].text, toks[1:], s.line)
			if err != nil {
				return nil, "", err
			}
			if end != "" {
				p.pos-- // the caller reads the ending statement again
				return nodes, end, nil
			}
			if n != nil {
				nodes = append(nodes, n)
			}
		}
	}
	return nodes, "", nil
}

// ends are the statements that close or divide a block.
var ends = map[string]bool{"endif": true, "elif": true, "else": true, "endfor": true, "endset": true, "endgeneration": true}

func (p *parser) statement(kw string, toks []token, line int) (node, string, error) {
	if ends[kw] {
		return nil, kw, nil
	}
	switch kw {
	case "if":
		return p.ifStatement(toks, line)
	case "for":
		return p.forStatement(toks, line)
	case "set":
		return p.setStatement(toks, line)
	case "break", "continue":
		return loopControl(kw), "", nil
	case "generation":
		body, err := p.until(line, "generation", "endgeneration")
		if err != nil {
			return nil, "", err
		}
		return ifNode{conds: []expr{literal{true}}, bodies: [][]node{body}}, "", nil
	}
	return nil, "", errorAt(line, "unsupported tag {%% %s %%}", kw)
}

// next returns the ending statement at p.pos and its tokens, and moves past it.
func (p *parser) next() (string, []token, int, error) {
	s := p.segs[p.pos]
	p.pos++
	toks, err := tokenize(s.text, s.line)
	if err != nil {
		return "", nil, s.line, err
	}
	return toks[0].text, toks[1:], s.line, nil
}

// until parses a body that must end with the statement want.
func (p *parser) until(line int, opener, want string) ([]node, error) {
	body, _, _, _, err := p.section(line, opener, want)
	return body, err
}

// section parses a body of the statement opener, on line, that must be
// closed with closer, and reads the statement that ended it, which must be
// closer or one of also: its keyword, the tokens after it and its line.
func (p *parser) section(line int, opener, closer string, also ...string) (body []node, kw string, rest []token, at int, err error) {
	body, end, err := p.block()
	if err != nil {
		return nil, "", nil, 0, err
	}
	if end == "" {
		return nil, "", nil, 0, errorAt(line, "{%% %s %%} is not closed with {%% %s %%}", opener, closer)
	}
	kw, rest, at, err = p.next()
	if err != nil {
		return nil, "", nil, 0, err
	}
	if kw != closer && !slices.Contains(also, kw) {
		return nil, "", nil, 0, errorAt(at, "unexpected {%% %s %%} in {%% %s %%}", kw, opener)
	}
	return body, kw, rest, at, nil
}

func (p *parser) ifStatement(toks []token, line int) (node, string, error) {
	var n ifNode
	for {
		c, err := parseWhole(toks, line)
		if err != nil {
			return nil, "", err
		}
		body, kw, rest, l, err := p.section(line, "if", "endif", "elif", "else")
		if err != nil {
			return nil, "", err
		}
		n.conds = append(n.conds, c)
		n.bodies = append(n.bodies, body)
		if kw == "elif" {
			toks, line = rest, l
			continue
		}
		if kw == "else" {
			els, err := p.until(l, "else", "endif")
			if err != nil {
				return nil, "", err
			}
			n.bodies = append(n.bodies, els)
		}
		return n, "", nil
	}
}

func (p *parser) forStatement(toks []token, line int) (node, string, error) {
	n := forNode{line: line}
	i := 0
	for ; i < len(toks) && !(toks[i].kind == 'n' && toks[i].text == "in"); i++ {
		switch t := toks[i]; {
		case t.kind == 'n':
			n.vars = append(n.vars, t.text)
		case t.kind == 'o' && (t.text == "," || t.text == "(" || t.text == ")"):
		default:
			return nil, "", errorAt(line, "for: unexpected %q before in", t.text)
		}
	}
	if len(n.vars) == 0 || i == len(toks) {
		return nil, "", errorAt(line, "for: want {%% for NAME in EXPR %%}")
	}
	ep := &exprParser{toks: toks[i+1:], line: line}
	iter, err := ep.orExpr() // "if" after the iterable filters, it is no conditional expression
	if err != nil {
		return nil, "", err
	}
	n.iter = iter
	if ep.peekName("if") {
		ep.pos++
		if n.cond, err = ep.expression(); err != nil {
			return nil, "", err
		}
	}
	if ep.peekName("recursive") {
		return nil, "", errorAt(line, "for: recursive loops are not supported")
	}
	if err := ep.end(); err != nil {
		return nil, "", err
	}
	body, kw, _, l, err := p.section(line, "for", "endfor", "else")
	if err != nil {
		return nil, "", err
	}
	n.body = body
	if kw == "else" {
		if n.els, err = p.until(l, "else", "endfor"); err != nil {
			return nil, "", err
		}
	}
	return n, "", nil
}

func (p *parser) setStatement(toks []token, line int) (node, string, error) {
	n := setNode{line: line}
	if len(toks) == 0 || toks[0].kind != 'n' {
		return nil, "", errorAt(line, "set: want a name")
	}
	n.name, toks = toks[0].text, toks[1:]
	if len(toks) >= 2 && toks[0].text == "." && toks[1].kind == 'n' {
		n.attr, toks = toks[1].text, toks[2:]
	}
	if len(toks) == 0 {
		body, err := p.until(line, "set", "endset")
		if err != nil {
			return nil, "", err
		}
		n.body = body
		return n, "", nil
	}
	if toks[0].kind != 'o' || toks[0].text != "=" {
		return nil, "", errorAt(line, "set: want = after the name, got %q", toks[0].text)
	}
	v, err := parseWhole(toks[1:], line)
	if err != nil {
		return nil, "", err
	}
	n.value = v
	return n, "", nil
}

// parseWhole parses toks as one expression (a tuple "a, b" becomes a list).
func parseWhole(toks []token, line int) (expr, error) {
	ep := &exprParser{toks: toks, line: line}
	e, err := ep.expression()
	if err != nil {
		return nil, err
	}
	if ep.peekOp(",") {
		items := listLit{e}
		for ep.peekOp(",") {
			ep.pos++
			x, err := ep.expression()
			if err != nil {
				return nil, err
			}
			items = append(items, x)
		}
		e = items
	}
	return e, ep.end()
}

type exprParser struct {
	toks []token
	pos  int
	line int
}

func (ep *exprParser) peek() token {
	if ep.pos < len(ep.toks) {
		return ep.toks[ep.pos]
	}
	return token{}
}

func (ep *exprParser) peekOp(op string) bool {
	t := ep.peek()
	return t.kind == 'o' && t.text == op
}

func (ep *exprParser) peekName(n string) bool {
	t := ep.peek()
	return t.kind == 'n' && t.text == n
}

func (ep *exprParser) expect(op string) error {
	if !ep.peekOp(op) {
		return ep.errorf("want %q, got %s", op, ep.describe())
	}
	ep.pos++
	return nil
}

func (ep *exprParser) describe() string {
	t := ep.peek()
	if t.kind == 0 {
		return "the end of the tag"
	}
	return strconv.Quote(t.text)
}

func (ep *exprParser) errorf(format string, args ...any) error {
	return errorAt(ep.line, format, args...)
}

func (ep *exprParser) end() error {
	if ep.pos < len(ep.toks) {
		return ep.errorf("unexpected %s", ep.describe())
	}
	return nil
}

// expression: or_expr [if or_expr [else expression]]
func (ep *exprParser) expression() (expr, error) {
	x, err := ep.orExpr()
	if err != nil {
		return nil, err
	}
	if !ep.peekName("if") {
		return x, nil
	}
	ep.pos++
	t, err := ep.orExpr()
	if err != nil {
		return nil, err
	}
	var no expr = literal{undefined{}}
	if ep.peekName("else") {
		ep.pos++
		if no, err = ep.expression(); err != nil {
			return nil, err
		}
	}
	return cond{t, x, no}, nil
}

func (ep *exprParser) orExpr() (expr, error) {
	return ep.leftAssoc(ep.andExpr, "or")
}

func (ep *exprParser) andExpr() (expr, error) {
	return ep.leftAssoc(ep.notExpr, "and")
}

func (ep *exprParser) leftAssoc(sub func() (expr, error), ops ...string) (expr, error) {
	x, err := sub()
	if err != nil {
		return nil, err
	}
	for {
		t := ep.peek()
		op := ""
		for _, o := range ops {
			if (t.kind == 'o' || t.kind == 'n') && t.text == o {
				op = o
			}
		}
		if op == "" {
			return x, nil
		}
		ep.pos++
		y, err := sub()
		if err != nil {
			return nil, err
		}
		x = binary{op, x, y, ep.line}
	}
}

func (ep *exprParser) notExpr() (expr, error) {
	if ep.peekName("not") {
		ep.pos++
		x, err := ep.notExpr()
		if err != nil {
			return nil, err
		}
		return unary{"not", x}, nil
	}
	return ep.compare()
}

func (ep *exprParser) compare() (expr, error) {
	x, err := ep.math1()
	if err != nil {
		return nil, err
	}
	for {
		t := ep.peek()
		op := ""
		switch {
		case t.kind == 'o' && strings.Contains(" == != < > <= >= ", " "+t.text+" "):
			op = t.text
		case t.kind == 'n' && t.text == "in":
			op = "in"
		case t.kind == 'n' && t.text == "not" && ep.pos+1 < len(ep.toks) && ep.toks[ep.pos+1].text == "in":
			op = "not in"
			ep.pos++
		}
		if op == "" {
			return x, nil
		}
		ep.pos++
		y, err := ep.math1()
		if err != nil {
			return nil, err
		}
		x = binary{op, x, y, ep.line}
	}
}

func (ep *exprParser) math1() (expr, error)  { return ep.leftAssoc(ep.concat, "+", "-") }
func (ep *exprParser) concat() (expr, error) { return ep.leftAssoc(ep.math2, "~") }
func (ep *exprParser) math2() (expr, error) {
	return ep.leftAssoc(ep.pow, "*", "/", "//", "%")
}
func (ep *exprParser) pow() (expr, error) { return ep.leftAssoc(ep.unaryExpr, "**") }

func (ep *exprParser) unaryExpr() (expr, error) {
	if ep.peekOp("-") || ep.peekOp("+") {
		op := ep.peek().text
		ep.pos++
		x, err := ep.unaryExpr()
		if err != nil {
			return nil, err
		}
		return unary{op, x}, nil
	}
	x, err := ep.primary()
	if err != nil {
		return nil, err
	}
	if x, err = ep.postfix(x); err != nil {
		return nil, err
	}
	return ep.filters(x)
}

func (ep *exprParser) primary() (expr, error) {
	t := ep.peek()
	ep.pos++
	switch t.kind {
	case 's':
		s := t.text
		for ep.peek().kind == 's' { // adjacent literals join, as in Python
			s += ep.peek().text
			ep.pos++
		}
		return literal{s}, nil
	case 'i':
		n, err := strconv.ParseInt(t.text, 10, 64)
		if err != nil {
			return nil, ep.errorf("bad integer %q", t.text)
		}
		return literal{n}, nil
	case 'f':
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, ep.errorf("bad number %q", t.text)
		}
		return literal{f}, nil
	case 'n':
		switch t.text {
		case "true", "True":
			return literal{true}, nil
		case "false", "False":
			return literal{false}, nil
		case "none", "None":
			return literal{nil}, nil
		}
		return name(t.text), nil
	case 'o':
		switch t.text {
		case "(":
			x, err := ep.expression()
			if err != nil {
				return nil, err
			}
			if ep.peekOp(",") { // a tuple
				items := listLit{x}
				for ep.peekOp(",") {
					ep.pos++
					if ep.peekOp(")") {
						break
					}
					y, err := ep.expression()
					if err != nil {
						return nil, err
					}
					items = append(items, y)
				}
				x = items
			}
			return x, ep.expect(")")
		case "[":
			var items listLit
			err := ep.commaList("]", func() error {
				x, err := ep.expression()
				items = append(items, x)
				return err
			})
			if err != nil {
				return nil, err
			}
			return items, nil
		case "{":
			var d dictLit
			err := ep.commaList("}", func() error {
				k, err := ep.expression()
				if err != nil {
					return err
				}
				if err := ep.expect(":"); err != nil {
					return err
				}
				v, err := ep.expression()
				d.keys, d.values = append(d.keys, k), append(d.values, v)
				return err
			})
			if err != nil {
				return nil, err
			}
			return d, nil
		}
	}
	ep.pos--
	return nil, ep.errorf("want an expression, got %s", ep.describe())
}

func (ep *exprParser) postfix(x expr) (expr, error) {
	for {
		switch {
		case ep.peekOp("."):
			ep.pos++
			t := ep.peek()
			if t.kind != 'n' && t.kind != 'i' {
				return nil, ep.errorf("want an attribute name after '.', got %s", ep.describe())
			}
			ep.pos++
			x = getattr{x, t.text}
		case ep.peekOp("["):
			ep.pos++
			var parts [3]expr
			colons := 0
			for !ep.peekOp("]") {
				if ep.peekOp(":") {
					colons++
					ep.pos++
					if colons > 2 {
						return nil, ep.errorf("too many ':' in a slice")
					}
					continue
				}
				e, err := ep.expression()
				if err != nil {
					return nil, err
				}
				parts[colons] = e
			}
			ep.pos++
			if colons == 0 {
				if parts[0] == nil {
					return nil, ep.errorf("empty subscript []")
				}
				x = getitem{x, parts[0]}
			} else {
				x = slice{x, parts[0], parts[1], parts[2]}
			}
		case ep.peekOp("("):
			args, kwargs, err := ep.callArgs()
			if err != nil {
				return nil, err
			}
			x = call{x, args, kwargs, ep.line}
		default:
			return x, nil
		}
	}
}

// callArgs parses "(a, b, k=v)".
func (ep *exprParser) callArgs() ([]expr, map[string]expr, error) {
	if err := ep.expect("("); err != nil {
		return nil, nil, err
	}
	var args []expr
	var kwargs map[string]expr
	err := ep.commaList(")", func() error {
		if t := ep.peek(); t.kind == 'n' && ep.pos+1 < len(ep.toks) && ep.toks[ep.pos+1].text == "=" && ep.toks[ep.pos+1].kind == 'o' {
			ep.pos += 2
			v, err := ep.expression()
			if err != nil {
				return err
			}
			if kwargs == nil {
				kwargs = map[string]expr{}
			}
			kwargs[t.text] = v
			return nil
		}
		a, err := ep.expression()
		args = append(args, a)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return args, kwargs, nil
}

// commaList parses items separated by commas, a trailing one allowed, up
// to closer, which it consumes; item parses one item.
func (ep *exprParser) commaList(closer string, item func() error) error {
	for !ep.peekOp(closer) {
		if err := item(); err != nil {
			return err
		}
		if !ep.peekOp(",") {
			break
		}
		ep.pos++
	}
	return ep.expect(closer)
}

// filters parses "| name(args)" and "is [not] name [arg]" after a value.
func (ep *exprParser) filters(x expr) (expr, error) {
	for {
		switch {
		case ep.peekOp("|"):
			ep.pos++
			t := ep.peek()
			if t.kind != 'n' {
				return nil, ep.errorf("want a filter name after '|', got %s", ep.describe())
			}
			ep.pos++
			f := filter{x: x, name: t.text, line: ep.line}
			if ep.peekOp("(") {
				var err error
				if f.args, f.kwargs, err = ep.callArgs(); err != nil {
					return nil, err
				}
			}
			x = f
		case ep.peekName("is"):
			ep.pos++
			ts := test{x: x, line: ep.line}
			if ep.peekName("not") {
				ts.negate = true
				ep.pos++
			}
			t := ep.peek()
			if t.kind != 'n' && !(t.kind == 'o' && strings.Contains(" == != < > <= >= ", " "+t.text+" ")) {
				return nil, ep.errorf("want a test name after 'is', got %s", ep.describe())
			}
			ep.pos++
			ts.name = t.text
			switch t.text {
			case "none", "None":
				ts.name = "none"
			case "true", "True":
				ts.name = "true"
			case "false", "False":
				ts.name = "false"
			}
			if ep.peekOp("(") {
				args, _, err := ep.callArgs()
				if err != nil {
					return nil, err
				}
				ts.args = args
			} else if nt := ep.peek(); nt.kind == 's' || nt.kind == 'i' || nt.kind == 'f' || (nt.kind == 'n' && !isKeyword(nt.text)) {
				a, err := ep.primary()
				if err != nil {
					return nil, err
				}
				ts.args = []expr{a}
			}
			x = ts
		default:
			return x, nil
		}
	}
}

func isKeyword(s string) bool {
	switch s {
	case "and", "or", "not", "in", "is", "if", "else", "recursive":
		return true
	}
	return false
}
