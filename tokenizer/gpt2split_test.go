package tokenizer

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSplitGPT2 checks GPT-2's split against cases worked out by hand from
// the pattern's alternatives.
func TestSplitGPT2(t *testing.T) {
	tests := []struct {
		text   string
		want   []string
		reason string
	}{
		{"Hello world", []string{"Hello", " world"}, "a space joins the letters after it"},
		{"Hello  world", []string{"Hello", " ", " world"}, `\s+(?!\S) leaves the last space to the word`},
		{"a   b", []string{"a", "  ", " b"}, "three spaces: two, then one with the word"},
		{"a\tb", []string{"a", "\t", "b"}, "only a space, not a tab, joins a word"},
		{"a \tb", []string{"a", " ", "\t", "b"}, "space then tab: the tab is the run's last character"},
		{"end  ", []string{"end", "  "}, "white space at the end is one piece"},
		{"don't", []string{"don", "'t"}, "contraction"},
		{"'sa", []string{"'s", "a"}, "contractions come first, even inside a word"},
		{"'S", []string{"'", "S"}, "contractions are lower case only"},
		{"x'y", []string{"x", "'", "y"}, "an apostrophe that starts no contraction is punctuation"},
		{"3.14", []string{"3", ".", "14"}, "digits and punctuation part"},
		{" 42abc", []string{" 42", "abc"}, "a space joins digits"},
		{"!?x", []string{"!?", "x"}, "a run of punctuation"},
		{" !?", []string{" !?"}, "a space joins punctuation"},
		{"日本 語", []string{"日本", " 語"}, "letters of any script"},
		{"😀 😀", []string{"😀", " 😀"}, "emoji are neither letters nor digits"},
		{"\n\nx", []string{"\n", "\n", "x"}, "newlines: the run less its last, then the last alone"},
		{" ", []string{" "}, "a lone space"},
		{"", nil, "nothing"},
	}
	for i, tt := range tests {
		got := splitGPT2(tt.text)
		if !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%q, %s): got %q want %q", i, tt.text, tt.reason, got, tt.want)
		}
	}
}

// TestSplitGPT2Regex checks GPT-2's split against the real pattern run by
// Python's regex module (testdata/gpt2-split/make_split.py) on 347 texts.
func TestSplitGPT2Regex(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "gpt2-split", "split.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var c struct {
			Text   string   `json:"text"`
			Pieces []string `json:"pieces"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		n++
		got := splitGPT2(c.Text)
		if len(got) == 0 && len(c.Pieces) == 0 {
			continue
		}
		if !slices.Equal(got, c.Pieces) {
			t.Errorf("text %q: got %q want %q", c.Text, got, c.Pieces)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 300 {
		t.Errorf("read %d cases, want at least 300", n)
	}
}
