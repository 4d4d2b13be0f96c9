package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLlamaIDs(t *testing.T) {
	tok := loadLlama(t)
	if got := tok.VocabSize(); got != 32000 {
		t.Errorf("vocab size: got %d want 32000", got)
	}
	if tok.BOS() != 1 || tok.EOS() != 2 || tok.PadID() != 0 {
		t.Errorf("special ids: got bos %d eos %d pad %d want 1 2 0", tok.BOS(), tok.EOS(), tok.PadID())
	}
	if id, ok := tok.TokenID("▁Hello"); !ok || id != 15043 {
		t.Errorf("TokenID(▁Hello): got %d, %v want 15043", id, ok)
	}
	if s, ok := tok.Token(13); !ok || s != "<0x0A>" {
		t.Errorf("Token(13): got %q, %v want <0x0A>", s, ok)
	}
	if _, ok := tok.Token(32000); ok {
		t.Errorf("Token(32000): got a token, want none")
	}
	// Ids that Llama's SentencePiece model gives (HF LlamaTokenizer(Fast)
	// with the legacy prefix space), known independently of this file.
	tests := []struct {
		text       string
		addSpecial bool
		want       []int64
	}{
		{"Hello world", true, []int64{1, 15043, 3186}},
		{"Hello world", false, []int64{15043, 3186}},
		// "\n" is not in the vocabulary: byte fallback gives <0x0A> = 13.
		{"a\nb", false, []int64{263, 13, 29890}},
		// U+1F600 is four bytes: <0xF0><0x9F><0x98><0x80> = 243 162 155 131.
		{"😀", false, []int64{29871, 243, 162, 155, 131}},
	}
	for i, tt := range tests {
		got, err := tok.Encode(tt.text, tt.addSpecial)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%q, special %v): got %v want %v", i, tt.text, tt.addSpecial, got, tt.want)
		}
	}
}

func TestLlamaRoundTrip(t *testing.T) {
	tok := loadLlama(t)
	for i, text := range []string{"Hello world", "The quick brown fox.", "héllo wörld 日本", "x  y", "tab\there", "line\nbreak 😀", ""} {
		for _, special := range []bool{true, false} {
			ids, err := tok.Encode(text, special)
			if err != nil {
				t.Fatal(err)
			}
			if special && (len(ids) == 0 || ids[0] != tok.BOS()) {
				t.Errorf("test %d (%q): encoding with special tokens does not start with BOS: %v", i, text, ids)
			}
			got, err := tok.Decode(ids, true)
			if err != nil {
				t.Fatal(err)
			}
			if got != text {
				t.Errorf("unexpected round trip for test %d (special %v): got %q want %q (ids %v)", i, special, got, text, ids)
			}
		}
	}
	withSpecial, err := tok.Decode([]int64{1, 15043, 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(withSpecial, "<s>") || !strings.Contains(withSpecial, "</s>") {
		t.Errorf("decode keeping special tokens: got %q", withSpecial)
	}
}

func TestLlamaErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"missing", func() error { _, err := Load(filepath.Join(dir, "none.json")); return err }, "none.json: no such file"},
		{"not json", func() error { _, err := Load(bad); return err }, "not a tokenizer.json"},
	}
	if tok, err := Load(llamaPath); err == nil {
		tests = append(tests,
			struct {
				name string
				err  func() error
				want string
			}{"decode range", func() error { _, err := tok.Decode([]int64{1, 32000}, true); return err }, "token id 32000 at position 1"},
			struct {
				name string
				err  func() error
				want string
			}{"model vocab", func() error { return tok.CheckModelVocab(31999) }, "32000 tokens, more than the model's vocabulary of 31999"},
		)
		if err := tok.CheckModelVocab(32000); err != nil {
			t.Errorf("CheckModelVocab(32000): %v", err)
		}
	}
	for i, tt := range tests {
		err := tt.err()
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "tokenizer: ") {
			t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.want)
		}
	}
}
