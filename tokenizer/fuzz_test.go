package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// fuzzSeeds are small tokenizer files, good and broken, that FuzzLoad
// starts from.
var fuzzSeeds = []string{
	`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<unk>": 3}, "merges": ["a b"], "unk_token": "<unk>", "fuse_unk": true}}`,
	`{"version": "1.0", "added_tokens": [{"id": 0, "content": "<s>", "special": true, "normalized": false, "lstrip": true, "rstrip": true, "single_word": true}],
	  "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
	  "post_processor": {"type": "TemplateProcessing", "single": "<s> $A", "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
	  "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
	  "model": {"type": "BPE", "vocab": {"<s>": 0, "▁": 1, "a": 2, "▁a": 3, "<0x0A>": 4}, "merges": [["▁", "a"]], "byte_fallback": true}}`,
	`{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Isolated", "invert": false},
	  {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}, {"type": "Digits", "individual_digits": true},
	  {"type": "Punctuation", "behavior": "MergedWithNext"}, {"type": "WhitespaceSplit"}, {"type": "Whitespace"}, {"type": "CharDelimiterSplit", "delimiter": "x"}]},
	  "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
	  "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "▁a": 1}, "unk_token": "[UNK]"}}`,
	`{"normalizer": {"type": "BertNormalizer", "lowercase": true}, "pre_tokenizer": {"type": "BertPreTokenizer"},
	  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]}, "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
	  "model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3, "##b": 4}, "max_input_chars_per_word": 5}}`,
	`{"normalizer": {"type": "Replace", "pattern": {"Regex": "(a"}, "content": ""}, "model": {"type": "BPE", "vocab": {}, "merges": []}}`,
	`{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}`,
	`{"model": {"vocab": {"a": 0}, "merges": ["a"]}}`,
	`[`,
}

// FuzzLoad checks that Load returns a tokenizer or a one-line error for
// any file, and that a tokenizer it returns encodes and decodes without
// panicking.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, name := range []string{"gpt2-tiny", "bert-tiny"} {
		b, err := os.ReadFile(filepath.Join("testdata", name, "tokenizer.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "tokenizer.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := Load(path)
		if err != nil {
			checkOneLine(t, err, path)
			return
		}
		for _, text := range []string{"", "Hello world", " a  b\n\tc 😀 <s>[SEP]ab", strings.Repeat("ab ", 50)} {
			for _, special := range []bool{false, true} {
				ids, err := tok.Encode(text, special)
				if err != nil {
					checkOneLine(t, err, path)
					continue
				}
				for _, skip := range []bool{false, true} {
					if _, err := tok.Decode(ids, skip); err != nil {
						t.Fatalf("Encode(%q) gave ids %v that Decode refuses: %v", text, ids, err)
					}
				}
			}
		}
	})
}

// FuzzEncode checks that any text encodes without panicking, and that the
// Llama and the byte-level tokenizers give the text back when it has no
// added token and no "▁" (which Llama decodes as a space).
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"Hello world", "a\n\n b", "  x  ", "héllo 日本 😀", "<s>a</s>", "\x00\x01", "don't", "▁x", "ab\xff"} {
		f.Add(s)
	}
	llama := loadLlama(f)
	gpt2 := loadFixture(f, "gpt2-tiny")
	bert := loadFixture(f, "bert-tiny")
	f.Fuzz(func(t *testing.T, text string) {
		for _, tok := range []*Tokenizer{llama, gpt2, bert} {
			ids, err := tok.Encode(text, false)
			if !utf8.ValidString(text) {
				if err == nil {
					t.Fatalf("%s: Encode took text that is not UTF-8: %q", tok.Path(), text)
				}
				checkOneLine(t, err, tok.Path())
				continue
			}
			if err != nil {
				t.Fatalf("%s: Encode(%q): %v", tok.Path(), text, err)
			}
			got, err := tok.Decode(ids, false)
			if err != nil {
				t.Fatalf("%s: Decode(Encode(%q)): %v", tok.Path(), text, err)
			}
			if tok == bert || strings.Contains(text, "▁") && tok == llama || hasAddedToken(tok, text) {
				continue
			}
			if got != text {
				t.Errorf("%s: round trip of %q: got %q (ids %v)", tok.Path(), text, got, ids)
			}
		}
	})
}

// hasAddedToken reports whether text holds an added token's content.
func hasAddedToken(tok *Tokenizer, text string) bool {
	for _, m := range []*matcher{tok.raw, tok.normalized} {
		if m == nil {
			continue
		}
		for _, a := range m.tokens {
			if strings.Contains(text, a.content) {
				return true
			}
		}
	}
	return false
}
