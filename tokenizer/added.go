package tokenizer

import (
	"unicode/utf8"
)

// addedToken is a token of tokenizer.json's added_tokens: it is split out
// of the text before the model sees it (special tokens such as <s> are
// added tokens).
type addedToken struct {
	content    string
	id         int64
	singleWord bool // only where no word character is next to it
	lstrip     bool // takes the white space before it
	rstrip     bool // takes the white space after it
	normalized bool // found in the normalized text, not the raw text
	special    bool // left out by Decode when asked to skip special tokens
}

// part is a part of a text after added tokens are split out: text, or an
// added token (id >= 0).
type part struct {
	text    string
	id      int64
	atStart bool
}

// matcher finds added tokens in text, the leftmost and then longest first
// as HF tokenizers does. It is an Aho-Corasick automaton of the patterns
// reversed, run over the text from its end, which gives for every position
// the longest pattern that starts there in one pass.
type matcher struct {
	nodes      []acNode
	edges      map[uint64]int32 // node<<8 | byte -> child
	tokens     []*addedToken    // by pattern
	lens       []int            // by pattern
	firstBytes [256]bool        // bytes that patterns start with
}

// acNode is a node of the automaton's trie.
type acNode struct {
	fail     int32
	terminal int32 // the pattern that ends here, or -1
	best     int32 // the longest pattern that is a suffix of this node's string, or -1
	child    int32 // first child, or -1
	sibling  int32 // next child of the parent, or -1
	b        byte  // the byte of the edge into this node
}

// newMatcher returns a matcher of patterns, which are the texts that
// tokens are found as; nil when there are none.
func newMatcher(patterns []string, tokens []*addedToken) *matcher {
	m := &matcher{edges: map[uint64]int32{}}
	m.nodes = append(m.nodes, acNode{terminal: -1, best: -1, child: -1, sibling: -1})
	for k, p := range patterns {
		if p == "" {
			continue
		}
		node := int32(0)
		for i := len(p) - 1; i >= 0; i-- {
			node = m.childOrNew(node, p[i])
		}
		if m.nodes[node].terminal >= 0 {
			continue // an earlier token has this pattern
		}
		m.nodes[node].terminal = int32(len(m.tokens))
		m.tokens = append(m.tokens, tokens[k])
		m.lens = append(m.lens, len(p))
		m.firstBytes[p[0]] = true
	}
	if len(m.tokens) == 0 {
		return nil
	}
	// Failure links, breadth first.
	queue := []int32{}
	for c := m.nodes[0].child; c >= 0; c = m.nodes[c].sibling {
		m.nodes[c].fail = 0
		m.nodes[c].best = m.nodes[c].terminal
		queue = append(queue, c)
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for v := m.nodes[u].child; v >= 0; v = m.nodes[v].sibling {
			b := m.nodes[v].b
			f := m.nodes[u].fail
			next, ok := m.edges[uint64(f)<<8|uint64(b)]
			for !ok && f != 0 {
				f = m.nodes[f].fail
				next, ok = m.edges[uint64(f)<<8|uint64(b)]
			}
			if ok && next != v {
				m.nodes[v].fail = next
			}
			if m.nodes[v].best = m.nodes[v].terminal; m.nodes[v].best < 0 {
				m.nodes[v].best = m.nodes[m.nodes[v].fail].best
			}
			queue = append(queue, v)
		}
	}
	return m
}

// childOrNew returns the child of node along byte b, made if missing.
func (m *matcher) childOrNew(node int32, b byte) int32 {
	key := uint64(node)<<8 | uint64(b)
	if c, ok := m.edges[key]; ok {
		return c
	}
	c := int32(len(m.nodes))
	m.nodes = append(m.nodes, acNode{terminal: -1, best: -1, child: -1, sibling: m.nodes[node].child, b: b})
	m.nodes[node].child = c
	m.edges[key] = c
	return c
}

// longestAt returns, for every byte position of s, the longest pattern
// that starts there, or -1.
func (m *matcher) longestAt(s string) []int32 {
	best := make([]int32, len(s))
	state := int32(0)
	for p := len(s) - 1; p >= 0; p-- {
		key := uint64(s[p])
		next, ok := m.edges[uint64(state)<<8|key]
		for !ok && state != 0 {
			state = m.nodes[state].fail
			next, ok = m.edges[uint64(state)<<8|key]
		}
		if ok {
			state = next
		}
		best[p] = m.nodes[state].best
	}
	return best
}

// split appends to out the parts of piece: its text between added tokens,
// and the tokens, with their options (single word, strip) applied.
func (m *matcher) split(out []part, piece part) []part {
	s := piece.text
	if m == nil || !m.mayMatch(s) {
		return append(out, piece)
	}
	best := m.longestAt(s)
	from := 0 // where the text not yet given out starts
	for i := 0; i < len(s); {
		k := best[i]
		if k < 0 {
			i++
			continue
		}
		tok := m.tokens[k]
		start, stop := i, i+m.lens[k]
		i = stop
		if tok.singleWord && (start > 0 && endsWithWordChar(s[:start]) || stop < len(s) && startsWithWordChar(s[stop:])) {
			continue
		}
		if tok.lstrip {
			start = max(trailingSpaceStart(s[:start]), from)
		}
		if tok.rstrip {
			stop += leadingSpaceLen(s[stop:])
		}
		start = min(max(start, from), stop)
		if from < start {
			out = append(out, part{text: s[from:start], id: -1, atStart: piece.atStart && from == 0})
		}
		out = append(out, part{text: s[start:stop], id: tok.id})
		from = stop
	}
	if from < len(s) {
		out = append(out, part{text: s[from:], id: -1, atStart: piece.atStart && from == 0})
	}
	return out
}

// mayMatch reports whether s has a byte that a pattern starts with.
func (m *matcher) mayMatch(s string) bool {
	for i := 0; i < len(s); i++ {
		if m.firstBytes[s[i]] {
			return true
		}
	}
	return false
}

func endsWithWordChar(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordChar(r)
}

func startsWithWordChar(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordChar(r)
}

// trailingSpaceStart returns where the white space that s ends with starts.
func trailingSpaceStart(s string) int {
	i := len(s)
	for i > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:i])
		if !isWhitespace(r) {
			break
		}
		i -= n
	}
	return i
}

// leadingSpaceLen returns the length of the white space that s starts with.
func leadingSpaceLen(s string) int {
	return runEnd(s, 0, isWhitespace)
}
