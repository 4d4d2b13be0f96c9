package tokenizer

import (
	"encoding/json"
	"slices"
	"testing"
)

// preTokenize runs the pre-tokenizer of JSON spec on text and returns the
// words.
func preTokenize(t *testing.T, spec, text string) []string {
	t.Helper()
	p, err := parsePreTokenizer(json.RawMessage(spec), "pre_tokenizer", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range p.preTokenize([]word{{text: text, atStart: true}}) {
		got = append(got, w.text)
	}
	return got
}

// TestPreTokenizers checks pre-tokenizers on the examples of HF
// tokenizers' documentation and tests.
func TestPreTokenizers(t *testing.T) {
	split := func(behavior string) string {
		return `{"type": "Split", "pattern": {"String": "-"}, "behavior": "` + behavior + `", "invert": false}`
	}
	tests := []struct {
		spec, text string
		want       []string
	}{
		{split("Removed"), "the-final--countdown", []string{"the", "final", "countdown"}},
		{split("Isolated"), "the-final--countdown", []string{"the", "-", "final", "-", "-", "countdown"}},
		{split("MergedWithPrevious"), "the-final--countdown", []string{"the-", "final-", "-", "countdown"}},
		{split("MergedWithNext"), "the-final--countdown", []string{"the", "-final", "-", "-countdown"}},
		{split("Contiguous"), "the-final--countdown", []string{"the", "-", "final", "--", "countdown"}},
		{`{"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Removed", "invert": true}`, "ab12cd3", []string{"12", "3"}},
		{`{"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": false}`, "a\u00a0b\u3000c", []string{"a", "b", "c"}},
		{`{"type": "Split", "pattern": {"Regex": "` + jsonEscape(gpt2Pattern) + `"}, "behavior": "Isolated", "invert": false}`, "Hello  world", []string{"Hello", " ", " world"}},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}`, "Hey friend!", []string{"▁Hey", "▁friend!"}},
		{`{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}`, "Hey   friend!", []string{"▁Hey", "▁", "▁", "▁friend!"}},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}`, "Hey friend", []string{"Hey▁friend"}},
		{`{"type": "Whitespace"}`, "How are you doing?", []string{"How", "are", "you", "doing", "?"}},
		{`{"type": "Whitespace"}`, "Hey man!", []string{"Hey", "man", "!"}},
		{`{"type": "Whitespace"}`, "\n", nil},
		{`{"type": "WhitespaceSplit"}`, "Hey man!", []string{"Hey", "man!"}},
		{`{"type": "BertPreTokenizer"}`, "Hey friend!     How are you?!?", []string{"Hey", "friend", "!", "How", "are", "you", "?", "!", "?"}},
		{`{"type": "Digits", "individual_digits": true}`, "Hey 123 friend!", []string{"Hey ", "1", "2", "3", " friend!"}},
		{`{"type": "Digits", "individual_digits": false}`, "Hey 123 friend!", []string{"Hey ", "123", " friend!"}},
		{`{"type": "Punctuation"}`, "Hey friend!", []string{"Hey friend", "!"}},
		{`{"type": "CharDelimiterSplit", "delimiter": "x"}`, "axbxxc", []string{"a", "b", "c"}},
		{`{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true}`, "Hello my friend", []string{"ĠHello", "Ġmy", "Ġfriend"}},
		{`{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}`, "a b", []string{"aĠb"}},
		{`{"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Digits", "individual_digits": true}]}`, "ab12 c", []string{"ab", "1", "2", "c"}},
	}
	for i, tt := range tests {
		if got := preTokenize(t, tt.spec, tt.text); !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%s on %q): got %q want %q", i, tt.spec, tt.text, got, tt.want)
		}
	}
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// TestNormalizers checks normalizers on cases worked out from their
// definitions.
func TestNormalizers(t *testing.T) {
	tests := []struct {
		spec, text, want string
	}{
		{`{"type": "Lowercase"}`, "HÉLLO İ", "héllo i\u0307"},
		{`{"type": "StripAccents"}`, "e\u0301a\u0308", "ea"},
		{`{"type": "NFKC"}`, "ﬁ ①", "fi 1"},
		{`{"type": "NFD"}`, "é", "e\u0301"},
		{`{"type": "NFC"}`, "e\u0301", "é"},
		{`{"type": "Strip", "strip_left": true, "strip_right": false}`, " \ta \n", "a \n"},
		{`{"type": "Strip", "strip_left": true, "strip_right": true}`, "\u3000a b\u00a0", "a b"},
		{`{"type": "Nmt"}`, "a\u200bb\x01c\td", "a bc d"},
		{`{"type": "Prepend", "prepend": "▁"}`, "a", "▁a"},
		{`{"type": "Prepend", "prepend": "▁"}`, "", ""},
		{`{"type": "Replace", "pattern": {"String": " "}, "content": "▁"}`, "a b  c", "a▁b▁▁c"},
		{`{"type": "Replace", "pattern": {"String": "."}, "content": "!"}`, "a.b", "a!b"},
		{`{"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}`, "a\u00a0\u2003b\n\nc", "a b c"},
		{`{"type": "Replace", "pattern": {"Regex": "\\d"}, "content": "#"}`, "1٣x", "##x"},
		{`{"type": "ByteLevel"}`, "a é", "aĠÃ©"},
		{`{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}`, "Héllo\tWorld\x00 日本", "hello world  日  本 "},
		{`{"type": "BertNormalizer", "lowercase": false}`, "Héllo", "Héllo"},
		{`{"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}`, "Hello world", "▁Hello▁world"},
	}
	for i, tt := range tests {
		n, err := parseNormalizer(json.RawMessage(tt.spec), "normalizer", 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.normalize(tt.text); got != tt.want {
			t.Errorf("unexpected result for test %d (%s on %q): got %q want %q", i, tt.spec, tt.text, got, tt.want)
		}
	}
}

// TestDecoders checks decoders on cases worked out from their definitions.
func TestDecoders(t *testing.T) {
	tests := []struct {
		spec   string
		tokens []string
		want   string
	}{
		{`{"type": "ByteFallback"}`, []string{"<0xE6>", "<0x97>", "<0xA5>", "a"}, "日a"},
		{`{"type": "ByteFallback"}`, []string{"<0xE6>", "<0x97>", "a", "<0xff>"}, "\uFFFD\uFFFDa\uFFFD"},
		{`{"type": "ByteFallback"}`, []string{"<0x4g>", "<0x41"}, "<0x4g><0x41"},
		{`{"type": "Strip", "content": " ", "start": 1, "stop": 1}`, []string{"  a  ", " b"}, " a b"},
		{`{"type": "Strip", "content": " ", "start": 3, "stop": 3}`, []string{"  "}, ""},
		{`{"type": "Fuse"}`, []string{"a", "b"}, "ab"},
		{`{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}`, []string{"▁a▁", "b"}, " a b"},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}`, []string{"▁Hey", "▁friend!"}, "Hey friend!"},
		{`{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"}`, []string{"▁Hey", "▁friend!"}, " Hey friend!"},
		{`{"type": "BPEDecoder", "suffix": "</w>"}`, []string{"hel", "lo</w>", "world</w>"}, "hello world"},
		{`{"type": "WordPiece", "prefix": "##", "cleanup": false}`, []string{"un", "##aff", "##able", ","}, "unaffable ,"},
		{`{"type": "ByteLevel"}`, []string{"ĠHello", "Ġw", "orld", "<|endoftext|>"}, " Hello world<|endoftext|>"},
		{`{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}`,
			[]string{"▁Hello", "<0x0A>", "▁", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"}, "Hello\n 😀"},
	}
	for i, tt := range tests {
		d, err := parseDecoder(json.RawMessage(tt.spec), "decoder", 0)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, s := range d.decodeChain(slices.Clone(tt.tokens)) {
			got += s
		}
		if got != tt.want {
			t.Errorf("unexpected result for test %d (%s on %q): got %q want %q", i, tt.spec, tt.tokens, got, tt.want)
		}
	}
}

// TestAddedTokenOptions checks single_word, lstrip, rstrip and normalized
// added tokens with a WordLevel model and no pre-tokenizer, so that the
// spaces the options move are seen in the words.
func TestAddedTokenOptions(t *testing.T) {
	const file = `{
	  "added_tokens": [
	    {"id": 10, "content": "[A]", "single_word": true, "lstrip": false, "rstrip": false, "normalized": false, "special": false},
	    {"id": 11, "content": "<L>", "single_word": false, "lstrip": true, "rstrip": false, "normalized": false, "special": false},
	    {"id": 12, "content": "<R>", "single_word": false, "lstrip": false, "rstrip": true, "normalized": false, "special": false},
	    {"id": 13, "content": "day", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true, "special": false},
	    {"id": 14, "content": "<x>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
	  "normalizer": {"type": "Lowercase"},
	  "model": {"type": "WordLevel", "unk_token": "[UNK]",
	    "vocab": {"[UNK]": 0, "x": 1, "y": 2, " y": 3, "x ": 4, "[A]": 10, "<L>": 11, "<R>": 12, "day": 13, "<x>": 14}}}`
	tok, err := Parse([]byte(file), "added.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text   string
		want   []int64
		reason string
	}{
		{"x <L> y", []int64{1, 11, 3}, "lstrip takes the space before"},
		{"x <R> y", []int64{4, 12, 2}, "rstrip takes the space after"},
		{"x <x> y", []int64{4, 14, 3}, "a plain added token"},
		{"x [A] y", []int64{4, 10, 3}, "a single word with spaces around"},
		{"x[A]y", []int64{0}, "not a single word: left in the text, which has no token"},
		{"DAY", []int64{13}, "a normalized token is found after lower-casing"},
		{"xday", []int64{1, 13}, "found inside a word"},
		{"<L><R>", []int64{11, 12}, "adjacent tokens"},
	}
	for i, tt := range tests {
		got, err := tok.Encode(tt.text, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%q, %s): got %v want %v", i, tt.text, tt.reason, got, tt.want)
		}
	}
	if got, err := tok.Decode([]int64{1, 14, 2}, true); err != nil || got != "x y" {
		t.Errorf("decode skipping the special token: got %q, %v want %q", got, err, "x y")
	}
}

// TestMatcherLongest checks that the matcher takes the leftmost match, the
// longest of those, and goes on after it.
func TestMatcherLongest(t *testing.T) {
	patterns := []string{"ab", "abc", "bcd", "c", "aaaa"}
	tokens := make([]*addedToken, len(patterns))
	for i, p := range patterns {
		tokens[i] = &addedToken{content: p, id: int64(i)}
	}
	m := newMatcher(patterns, tokens)
	tests := []struct {
		text string
		want []string // added tokens in brackets
	}{
		{"abcd", []string{"[abc]", "d"}},
		{"xbcdc", []string{"x", "[bcd]", "[c]"}},
		{"aaaaaab", []string{"[aaaa]", "a", "[ab]"}},
		{"zzz", []string{"zzz"}},
	}
	for i, tt := range tests {
		var got []string
		for _, p := range m.split(nil, part{text: tt.text, id: -1}) {
			if p.id >= 0 {
				got = append(got, "["+p.text+"]")
			} else {
				got = append(got, p.text)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%q): got %q want %q", i, tt.text, got, tt.want)
		}
	}
}
