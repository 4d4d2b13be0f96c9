package feed

import (
	"regexp"
	"strconv"
	"strings"
)

// firstNumber finds the layer index in a cache name.
var firstNumber = regexp.MustCompile(`\d+`)

// isPast reports whether name (normalized) names a cache or state input.
func isPast(n string) bool { return strings.HasPrefix(n, "past") }

// isCross reports whether a past input (normalized) holds an encoder's
// keys or values: past_key_cross_{i}, past_key_values.{i}.encoder.key.
func isCross(n string) bool {
	return strings.Contains(n, "cross") || strings.Contains(n, ".encoder.") || strings.Contains(n, "_encoder_")
}

// lengthish reports whether a dimension's name says it is a sequence
// length.
func lengthish(p string) bool {
	p = strings.ToLower(p)
	for _, w := range []string{"past", "seq", "len", "total", "cache", "context"} {
		if strings.Contains(p, w) {
			return true
		}
	}
	return false
}

// kvName reports whether a past input (normalized) is named as a key/value
// cache rather than a state: a key or value, a stacked past_{i}, or a
// single past.
func kvName(n string) bool {
	if strings.Contains(n, "key") || strings.Contains(n, "value") {
		return true
	}
	rest := strings.TrimPrefix(n, "past")
	rest = strings.TrimLeft(rest, "._")
	_, err := strconv.Atoi(rest)
	return rest == "" || err == nil
}

// cacheAxes finds the batch and length axes of a past input: from the
// names of its dimensions, else, for a key/value name, from the usual
// layouts ([batch, heads, past, dim], stacked [2, batch, heads, past,
// dim], all layers [layers, 2, batch, heads, past, dim]). length is -1
// for a state.
func cacheAxes(in Input, n string) (batch, length int) {
	batch, length = -1, -1
	for i := range in.Shape {
		p := strings.ToLower(in.dimParam(i))
		switch {
		case p == "":
		case strings.Contains(p, "batch"):
			if batch < 0 {
				batch = i
			}
		case lengthish(p):
			if length < 0 {
				length = i
			}
		}
	}
	if kvName(n) {
		b, l := -1, -1
		switch len(in.Shape) {
		case 4:
			b, l = 0, 2
		case 5:
			b, l = 1, 3
		case 6:
			b, l = 2, 4
		}
		if length < 0 && l >= 0 && in.Shape[l] < 0 && (l != batch) {
			length = l
		}
		if batch < 0 && b >= 0 && in.Shape[b] < 0 && b != length {
			batch = b
		}
	}
	if batch < 0 {
		// Else the batch is the first dynamic dimension that is not the
		// length.
		for i, d := range in.Shape {
			if d < 0 && i != length {
				batch = i
				break
			}
		}
	}
	return batch, length
}

// PresentNames returns the output names that may return the next value
// of the cache or state input name, most likely first: present.0.key for
// past_key_values.0.key, present_3 for past_3, present_conv.0 for
// past_conv.0, present_key_self_0 for past_key_self_0.
func PresentNames(name string) []string {
	var c []string
	lower := strings.ToLower(name)
	if strings.HasPrefix(lower, "past_key_values") {
		rest := name[len("past_key_values"):]
		c = append(c, "present"+rest, "present_key_values"+rest)
	}
	if strings.HasPrefix(lower, "past") {
		rest := name[len("past"):]
		c = append(c, "present"+rest)
		if r, ok := strings.CutPrefix(rest, "_"); ok {
			c = append(c, "present."+r)
		}
	}
	return c
}

// findPresent returns the output among outs that returns past input name,
// or "".
func findPresent(name string, outs map[string]string) string {
	for _, c := range PresentNames(name) {
		if o, ok := outs[normalize(c)]; ok {
			return o
		}
	}
	return ""
}
