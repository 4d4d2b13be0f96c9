package tokenizer

import (
	"fmt"
	"regexp"
	"unicode/utf8"
)

// span is a part of a string that a pattern matched, or a part between
// matches.
type span struct {
	start, end int
	match      bool
}

// pattern finds where a string splits: the spans it returns cover the
// string in order (one unmatched empty span for an empty string).
type pattern interface {
	findMatches(s string) []span
}

// charPattern matches every character for which it returns true, each
// character a match of its own.
type charPattern func(rune) bool

func (p charPattern) findMatches(s string) []span {
	if s == "" {
		return []span{{0, 0, false}}
	}
	var spans []span
	last := 0
	for i, r := range s {
		if p(r) {
			if last < i {
				spans = append(spans, span{last, i, false})
			}
			end := i + utf8.RuneLen(r)
			spans = append(spans, span{i, end, true})
			last = end
		}
	}
	if last < len(s) {
		spans = append(spans, span{last, len(s), false})
	}
	return spans
}

// regexPattern matches a compiled regular expression, leftmost first.
type regexPattern struct{ re *regexp.Regexp }

func (p regexPattern) findMatches(s string) []span {
	if s == "" {
		return []span{{0, 0, false}}
	}
	return spansOf(s, p.re.FindAllStringIndex(s, -1))
}

// gpt2SplitPattern matches the words of GPT-2's pattern (splitGPT2).
type gpt2SplitPattern struct{}

func (gpt2SplitPattern) findMatches(s string) []span {
	if s == "" {
		return []span{{0, 0, false}}
	}
	spans := make([]span, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		end := matchGPT2(s, i)
		spans = append(spans, span{i, end, true})
		i = end
	}
	return spans
}

// spansOf returns the spans of s for matches given as [start, end] pairs.
func spansOf(s string, matches [][]int) []span {
	spans := make([]span, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if prev != m[0] {
			spans = append(spans, span{prev, m[0], false})
		}
		spans = append(spans, span{m[0], m[1], true})
		prev = m[1]
	}
	if prev != len(s) {
		spans = append(spans, span{prev, len(s), false})
	}
	return spans
}

// inverted is a pattern whose matches and gaps trade places.
type inverted struct{ p pattern }

func (p inverted) findMatches(s string) []span {
	spans := p.p.findMatches(s)
	for i := range spans {
		spans[i].match = !spans[i].match
	}
	return spans
}

// splitBehavior is what a split does with the matches of its pattern.
type splitBehavior int

const (
	removed            splitBehavior = iota // matches are dropped
	isolated                                // matches are words of their own
	mergedWithPrevious                      // a match ends the word before it
	mergedWithNext                          // a match starts the word after it
	contiguous                              // runs of matches, and of gaps, are words
)

// splitBehaviors are the behaviors by their names in tokenizer.json.
var splitBehaviors = map[string]splitBehavior{
	"Removed": removed, "Isolated": isolated, "MergedWithPrevious": mergedWithPrevious,
	"MergedWithNext": mergedWithNext, "Contiguous": contiguous,
}

// parseBehavior reads the split behavior name of the component at key.
func parseBehavior(name, key string) (splitBehavior, error) {
	b, ok := splitBehaviors[name]
	if !ok {
		return 0, fmt.Errorf("%s.behavior: unknown split behavior %s", key, quote(name))
	}
	return b, nil
}

// splitWord splits w where p matches, as behavior says, and appends the
// non-empty words to out.
func splitWord(out []word, w word, p pattern, behavior splitBehavior) []word {
	spans := p.findMatches(w.text)
	var parts []span // match is "drop" here
	switch behavior {
	case removed:
		parts = spans
	case isolated:
		parts = spans
		for i := range parts {
			parts[i].match = false
		}
	case contiguous, mergedWithPrevious:
		// contiguous joins runs of matches and runs of the rest; a match
		// merged with the previous joins the part before it.
		prevMatch := false
		for _, s := range spans {
			join := s.match == prevMatch
			if behavior == mergedWithPrevious {
				join = s.match && !prevMatch
			}
			if join && len(parts) > 0 {
				parts[len(parts)-1].end = s.end
			} else {
				parts = append(parts, span{s.start, s.end, false})
			}
			prevMatch = s.match
		}
	case mergedWithNext:
		prevMatch := false
		for k := len(spans) - 1; k >= 0; k-- {
			s := spans[k]
			if s.match && !prevMatch && len(parts) > 0 {
				parts[len(parts)-1].start = s.start
			} else {
				parts = append(parts, span{s.start, s.end, false})
			}
			prevMatch = s.match
		}
		for a, b := 0, len(parts)-1; a < b; a, b = a+1, b-1 {
			parts[a], parts[b] = parts[b], parts[a]
		}
	}
	for _, s := range parts {
		if s.match || s.start == s.end {
			continue
		}
		out = append(out, word{text: w.text[s.start:s.end], atStart: w.atStart && s.start == 0})
	}
	return out
}
