package tokenizer

import (
	"path/filepath"
	"slices"
	"testing"
)

func loadFixture(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tok, err := Load(filepath.Join("testdata", name, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// encodeCase is a text, whether special tokens are added, the ids worked
// out by hand, and how.
type encodeCase struct {
	text    string
	special bool
	want    []int64
	reason  string
}

func checkEncode(t *testing.T, tok *Tokenizer, tests []encodeCase) {
	t.Helper()
	for i, tt := range tests {
		got, err := tok.Encode(tt.text, tt.special)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%q, %s): got %v want %v", i, tt.text, tt.reason, got, tt.want)
		}
	}
}

// TestGPT2Fixture encodes with the hand-made byte-level tokenizer of
// testdata/gpt2-tiny. Byte characters have GPT-2's ids: printable ASCII
// c is c-0x21, "Ġ" (space) 220, "Ċ" (newline) 198; the merged tokens are
// 256 onwards in the order of the merge rules.
func TestGPT2Fixture(t *testing.T) {
	tok := loadFixture(t, "gpt2-tiny")
	checkEncode(t, tok, []encodeCase{
		{"the world", false, []int64{83, 257, 264}, `"the": h e (rank 1), no rule for t he; "Ġworld": Ġ w, o r, l d, Ġw or, Ġwor ld`},
		{" the", false, []int64{258}, "Ġ t (rank 0), h e (1), then Ġt he (2)"},
		{"a  b", false, []int64{64, 220, 220, 65}, `split "a", " ", " b"; no rule for Ġ b`},
		{"a   b", false, []int64{64, 266, 220, 65}, `split "a", "  ", " b"; Ġ Ġ merges`},
		{"it's", false, []int64{72, 83, 267}, `split "it", "'s"; ' s merges`},
		{"héllo", false, []int64{71, 127, 102, 75, 75, 78}, "é is bytes C3 A9, byte characters 127 and 102"},
		{"\n", false, []int64{198}, "newline is byte character Ċ"},
		{"😀", false, []int64{172, 253, 246, 222}, "F0 9F 98 80: F0 is printable (172), the others are moved (253, 246, 222)"},
		{"hi<|endoftext|>", false, []int64{71, 72, 268}, "the added token is split out first"},
		{"hi<|endoftext|>", true, []int64{71, 72, 268}, "the ByteLevel post-processor adds nothing"},
		{"", true, []int64{}, "nothing"},
	})
	decodes := []struct {
		ids         []int64
		skipSpecial bool
		want        string
	}{
		{[]int64{83, 257, 264}, true, "the world"},
		{[]int64{71, 127, 102, 75, 75, 78}, true, "héllo"},
		{[]int64{71, 72, 268}, true, "hi"},
		{[]int64{71, 72, 268}, false, "hi<|endoftext|>"},
		{[]int64{172, 253}, true, "\uFFFD"}, // F0 9F: one incomplete sequence, one replacement
		{[]int64{222, 64}, true, "\uFFFDa"}, // a lone continuation byte
		{[]int64{172, 253, 64, 222}, true, "\uFFFDa\uFFFD"},
	}
	for i, tt := range decodes {
		got, err := tok.Decode(tt.ids, tt.skipSpecial)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("unexpected decoding for test %d (%v): got %q want %q", i, tt.ids, got, tt.want)
		}
	}
	if tok.EOS() != 268 || tok.BOS() != -1 || tok.PadID() != 268 {
		t.Errorf("special ids: got bos %d eos %d pad %d want -1 268 268", tok.BOS(), tok.EOS(), tok.PadID())
	}
}

// TestBertFixture encodes with the hand-made WordPiece tokenizer of
// testdata/bert-tiny: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, hello
// 5, world 6, un 7, ##aff 8, ##able 9, "," 10, "!" 11, the 12, cafe 13,
// ##s 14, "'" 15.
func TestBertFixture(t *testing.T) {
	tok := loadFixture(t, "bert-tiny")
	checkEncode(t, tok, []encodeCase{
		{"Hello, World!", false, []int64{5, 10, 6, 11}, "lower case; punctuation split off"},
		{"Hello, World!", true, []int64{2, 5, 10, 6, 11, 3}, "[CLS] $A [SEP]"},
		{"unaffable", false, []int64{7, 8, 9}, "longest pieces from the start"},
		{"Café cafes", false, []int64{13, 13, 14}, "accent stripped; cafe ##s"},
		{"xyz", false, []int64{1}, "no piece for x: [UNK]"},
		{"hello\x00world", false, []int64{1}, "NUL removed, then helloworld has no ##world: [UNK] for the word"},
		{"日本", false, []int64{1, 1}, "each CJK ideograph is a word"},
		{"hello [SEP] world", false, []int64{5, 3, 6}, "the special token is split out"},
	})
	got, err := tok.Decode([]int64{2, 5, 10, 6, 11, 15, 7, 8, 9, 13, 14, 3}, true)
	if err != nil {
		t.Fatal(err)
	}
	// Clean-up works on each token with the space put before it: " ," and
	// " !" lose the space, " '" keeps it (" ' " needs the next token's).
	if want := "hello, world! ' unaffable cafes"; got != want {
		t.Errorf("decode: got %q want %q", got, want)
	}
	if tok.BOS() != 2 || tok.EOS() != 3 {
		t.Errorf("special ids: got bos %d eos %d want 2 3", tok.BOS(), tok.EOS())
	}
}
