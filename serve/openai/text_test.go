package openai

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTextAssembler feeds tokens one at a time: no piece may hold half a
// character or text past a stop string, and the pieces must add up to the
// decoded text (cut before the first stop string).
func TestTextAssembler(t *testing.T) {
	tk := tinyLlamaTokenizer(t)
	prompt, _ := tk.Encode("Say:", true)
	tests := []struct {
		text  string
		stops []string
		want  string
		stop  bool
	}{
		{"a llama 🦙 and ünïcode", nil, " a llama 🦙 and ünïcode", false},
		{"one two three", []string{"two"}, " one ", true},
		{"one two three", []string{"o t", "three"}, " one tw", true},   // the earliest stop wins
		{"one two three", []string{"threes"}, " one two three", false}, // held back, then given at the end
		{"🦙🦙 end", []string{"🦙 e"}, " 🦙", true},
	}
	for _, tc := range tests {
		// Llama's tokenizer puts a space before the text, which shows
		// once decoded after the prompt.
		ids, err := tk.Encode(tc.text, false)
		if err != nil {
			t.Fatal(err)
		}
		if tc.text == tests[0].text {
			bytesTokens := 0
			for _, id := range ids {
				if tok, _ := tk.Token(id); strings.HasPrefix(tok, "<0x") {
					bytesTokens++
				}
			}
			if bytesTokens < 2 {
				t.Fatalf("%q encodes to no byte tokens, so the test proves nothing", tc.text)
			}
		}
		a, err := newTextAssembler(tk, prompt, tc.stops)
		if err != nil {
			t.Fatal(err)
		}
		got, stopped := "", false
		for _, id := range ids {
			piece, s, err := a.add(id)
			if err != nil {
				t.Fatal(err)
			}
			if !utf8.ValidString(piece) || strings.ContainsRune(piece, utf8.RuneError) {
				t.Errorf("%q: piece %q holds part of a character", tc.text, piece)
			}
			got += piece
			if s {
				stopped = true
				break
			}
		}
		if !stopped {
			rest, err := a.finish()
			if err != nil {
				t.Fatal(err)
			}
			got += rest
		}
		if got != tc.want || stopped != tc.stop {
			t.Errorf("%q with stops %q: got %q (stopped %v), want %q (%v)", tc.text, tc.stops, got, stopped, tc.want, tc.stop)
		}
	}
}
