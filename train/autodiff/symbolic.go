package autodiff

import (
	"sort"
	"strconv"
	"strings"
)

// Symbolic arithmetic on dims, so that sizes computed in the graph keep
// their identity: an attention mask built from Range(total − seq, total)
// has seq rows, the same seq as the queries, and a Reshape to [0, 4, −1, 4]
// of [B, 2, 2, T, 4] has T in the −1 place. Sums and differences are kept
// as linear expressions over symbols; products only for Reshape's −1.

// lin is c + Σ coef·sym.
type lin struct {
	c     int64
	terms map[string]int64
}

// linOf reads a dim as a linear expression.
func (f *inferer) linOf(d dim) lin {
	if d.static() {
		return lin{c: d.v}
	}
	if l, ok := f.lins[d.sym]; ok {
		return l
	}
	return lin{terms: map[string]int64{d.sym: 1}}
}

// dimOf turns a linear expression back into a dim, with a canonical
// symbol so that equal expressions give equal dims.
func (f *inferer) dimOfLin(l lin) dim {
	var keys []string
	for k, v := range l.terms {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return known(l.c)
	}
	if len(keys) == 1 && l.c == 0 && l.terms[keys[0]] == 1 {
		return dim{sym: keys[0]}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("(")
	for _, k := range keys {
		b.WriteString(strconv.FormatInt(l.terms[k], 10) + "*" + k + " + ")
	}
	b.WriteString(strconv.FormatInt(l.c, 10) + ")")
	s := b.String()
	if f.lins == nil {
		f.lins = map[string]lin{}
	}
	f.lins[s] = l
	return dim{sym: s}
}

// addDims returns a + k·b.
func (f *inferer) addDims(a, b dim, k int64) dim {
	la, lb := f.linOf(a), f.linOf(b)
	out := lin{c: la.c + k*lb.c, terms: map[string]int64{}}
	for s, v := range la.terms {
		out.terms[s] += v
	}
	for s, v := range lb.terms {
		out.terms[s] += k * v
	}
	return f.dimOfLin(out)
}

// scaleDim returns a·num/den, or false when that does not divide evenly.
func (f *inferer) scaleDim(a dim, num, den int64) (dim, bool) {
	if den == 0 {
		return dim{}, false
	}
	l := f.linOf(a)
	out := lin{c: l.c * num, terms: map[string]int64{}}
	if out.c%den != 0 {
		return dim{}, false
	}
	out.c /= den
	for s, v := range l.terms {
		if v*num%den != 0 {
			return dim{}, false
		}
		out.terms[s] = v * num / den
	}
	return f.dimOfLin(out), true
}

// product is a static coefficient times symbols (kept whole, sums too).
type product struct {
	c    int64
	syms []string
}

func productOf(ds []dim) product {
	p := product{c: 1}
	for _, d := range ds {
		if d.static() {
			p.c *= d.v
		} else {
			p.syms = append(p.syms, d.sym)
		}
	}
	return p
}

// quotient returns the dim n/d when the division is exact as products of
// symbols, such as B·4·T / (B·4) = T.
func (f *inferer) quotient(n, d product) (dim, bool) {
	if d.c == 0 || n.c%d.c != 0 {
		return dim{}, false
	}
	rest := append([]string(nil), n.syms...)
	for _, s := range d.syms {
		found := false
		for i, r := range rest {
			if r == s {
				rest = append(rest[:i], rest[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			return dim{}, false
		}
	}
	c := n.c / d.c
	switch {
	case len(rest) == 0:
		return known(c), true
	case len(rest) == 1 && c == 1:
		return dim{sym: rest[0]}, true
	}
	return dim{}, false
}
