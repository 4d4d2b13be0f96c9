package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkOneLine fails unless err is a short one-line error of this package
// that names the file, with no Go runtime text.
func checkOneLine(t testing.TB, err error, name string) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, "tokenizer: "+name) {
		t.Errorf("error %q does not start with %q", msg, "tokenizer: "+name)
	}
	if strings.ContainsAny(msg, "\n\r") || len(msg) > len(name)+600 {
		t.Errorf("error is not one short line (%d bytes): %q", len(msg), cut(msg))
	}
	for _, bad := range []string{"runtime error", "nil pointer", "interface conversion", "panic", "goroutine", "Go struct field"} {
		if strings.Contains(msg, bad) {
			t.Errorf("error %q holds Go's %q", cut(msg), bad)
		}
	}
}

func cut(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// TestParseErrors feeds malformed tokenizer.json files and checks that
// each gives a one-line error that names the key at fault.
func TestParseErrors(t *testing.T) {
	const vocab = `{"a": 0, "b": 1, "ab": 2}`
	model := `"model": {"type": "BPE", "vocab": ` + vocab + `, "merges": ["a b"]}`
	long := strings.Repeat("x", 2<<20)
	tests := []struct {
		name, file, want string
	}{
		{"not json", `{not json`, "not a tokenizer.json: file: invalid JSON at byte 2"},
		{"array", `[1, 2]`, "not a tokenizer.json: file: got a JSON array, want an object"},
		{"empty object", `{}`, `no "model"`},
		{"null model", `{"model": null}`, `no "model"`},
		{"model not an object", `{"model": 3}`, "model: got a JSON number, want an object"},
		{"unsupported model", `{"model": {"type": "Unigram", "vocab": []}}`, `unsupported model type "Unigram"`},
		{"huge model type", `{"model": {"type": "` + long + `"}}`, `unsupported model type "xxxxxxxx`},
		{"model without type or fields", `{"model": {"unk_token": "a"}}`, `model: no "type"`},
		{"vocab an array", `{"model": {"type": "BPE", "vocab": [1], "merges": []}}`, "model.vocab: got a JSON array, want an object"},
		{"vocab id negative", `{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}`, "got a JSON number -1, want an integer from 0 to 4294967295"},
		{"vocab id fraction", `{"model": {"type": "BPE", "vocab": {"a": 1.5}, "merges": []}}`, "got a JSON number 1.5"},
		{"huge vocab key", `{"model": {"type": "BPE", "vocab": {"` + long + `": "x"}, "merges": []}}`, "got a JSON string, want an integer"},
		{"vocab ids shared", `{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}}`, `model.vocab: tokens "a" and "b" both have id 0`},
		{"no merges", `{"model": {"type": "BPE", "vocab": {"a": 0}}}`, `model: a BPE model needs "vocab" and "merges"`},
		{"merge of three", `{"model": {"type": "BPE", "vocab": ` + vocab + `, "merges": ["a b c"]}}`, `model.merges[0]: "a b c" is not two tokens with a space between`},
		{"merge not a string", `{"model": {"type": "BPE", "vocab": ` + vocab + `, "merges": [3]}}`, `model.merges[0]: want "a b" or ["a", "b"]`},
		{"merge token missing", `{"model": {"type": "BPE", "vocab": ` + vocab + `, "merges": ["a c"]}}`, `model.merges[0]: token "c" is not in the vocabulary`},
		{"merged token missing", `{"model": {"type": "BPE", "vocab": ` + vocab + `, "merges": ["b a"]}}`, `model.merges[0]: merged token "ba" is not in the vocabulary`},
		{"dropout", `{"model": {"type": "BPE", "vocab": {}, "merges": [], "dropout": 2}}`, "model.dropout: 2 is not in [0, 1]"},
		{"version", `{"version": "2.0", ` + model + `}`, `version: unknown tokenizer.json version "2.0"`},
		{"unsupported normalizer", `{"normalizer": {"type": "X"}, ` + model + `}`, `: unsupported normalizer type "X"`},
		{"nested unsupported normalizer", `{"normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Precompiled"}]}, ` + model + `}`,
			`normalizer.normalizers[1]: unsupported normalizer type "Precompiled"`},
		{"normalizer without type", `{"normalizer": {"prepend": "x"}, ` + model + `}`, `normalizer: no "type"`},
		{"invalid Replace regex", `{"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "_"}, {"type": "Replace", "pattern": {"Regex": "(a"}, "content": "b"}]}, ` + model + `}`,
			`normalizer.normalizers[1].pattern.Regex: invalid regex "(a": missing closing ): "(a"`},
		{"long invalid regex", `{"normalizer": {"type": "Replace", "pattern": {"Regex": "(` + long + `"}, "content": "b"}, ` + model + `}`, `normalizer.pattern.Regex: invalid regex "(xxx`},
		{"Replace without pattern", `{"normalizer": {"type": "Replace", "content": "b"}, ` + model + `}`, "normalizer.pattern: missing"},
		{"lookahead in Split", `{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)"}, "behavior": "Isolated", "invert": false}, ` + model + `}`,
			`pre_tokenizer.pattern.Regex: regex "\\s+(?!\\S)": lookaround (?! is not supported`},
		{"Split behavior", `{"pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"}, ` + model + `}`, `pre_tokenizer.behavior: unknown split behavior "Sideways"`},
		{"unsupported pre-tokenizer", `{"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}]}, ` + model + `}`,
			`pre_tokenizer.pretokenizers[0]: unsupported pre-tokenizer type "UnicodeScripts"`},
		{"Metaspace replacement", `{"pre_tokenizer": {"type": "Metaspace", "replacement": "ab"}, ` + model + `}`, `pre_tokenizer.replacement: "ab" is not one character`},
		{"Metaspace scheme", `{"pre_tokenizer": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "sometimes"}, ` + model + `}`, `pre_tokenizer.prepend_scheme: unknown scheme "sometimes"`},
		{"unsupported decoder", `{"decoder": {"type": "CTC"}, ` + model + `}`, `unsupported decoder type "CTC"`},
		{"Strip decoder content", `{"decoder": {"type": "Strip", "content": "", "start": 1, "stop": 0}, ` + model + `}`, `decoder.content: "" is not one character`},
		{"template special token missing", `{"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}}, ` + model + `}`,
			`post_processor: the template's special token "<s>" is not in special_tokens`},
		{"template id outside vocabulary", `{"post_processor": {"type": "TemplateProcessing", "single": "<s> $A", "special_tokens": {"<s>": {"id": "<s>", "ids": [7], "tokens": ["<s>"]}}}, ` + model + `}`,
			`post_processor.special_tokens["<s>"]: id 7 is not a token's`},
		{"template sequence B", `{"post_processor": {"type": "TemplateProcessing", "single": "$A $B", "special_tokens": {}}, ` + model + `}`, "a single-sequence template has sequence A only"},
		{"unsupported post-processor", `{"post_processor": {"type": "Mystery"}, ` + model + `}`, `unsupported post-processor type "Mystery"`},
		{"added tokens not an array", `{"added_tokens": {"a": 1}, ` + model + `}`, "added_tokens: got a JSON object, want an array"},
		{"added token content not a string", `{"added_tokens": [{"id": 3, "content": 5}], ` + model + `}`, "added_tokens.content: got a JSON number, want a string"},
		{"deep nesting", `{"normalizer": ` + strings.Repeat(`{"type": "Sequence", "normalizers": [`, 40) + strings.Repeat(`]}`, 40) + `, ` + model + `}`, "nested more than 32 deep"},
	}
	for i, tt := range tests {
		_, err := Parse([]byte(tt.file), "bad.json")
		if err == nil {
			t.Errorf("test %d (%s): got no error, want one containing %q", i, tt.name, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("test %d (%s): got error %q, want one containing %q", i, tt.name, cut(err.Error()), tt.want)
		}
		checkOneLine(t, err, "bad.json")
	}
}

// TestLimits checks the size limits and the text checks of Encode.
func TestLimits(t *testing.T) {
	path := filepath.Join("testdata", "gpt2-tiny", "tokenizer.json")
	if _, err := Load(path, WithMaxFileBytes(100)); err == nil || !strings.Contains(err.Error(), "larger than the limit of 100 bytes") {
		t.Errorf("file over the limit: got error %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data, "small", WithMaxFileBytes(100)); err == nil || !strings.Contains(err.Error(), "more than the limit of 100") {
		t.Errorf("data over the limit: got error %v", err)
	}
	for i, opt := range []Option{WithMaxFileBytes(0), WithMaxTextBytes(-1), WithMaxTextBytes(2 << 30)} {
		if _, err := Load(path, opt); err == nil || !strings.Contains(err.Error(), "longest text") && !strings.Contains(err.Error(), "largest file") {
			t.Errorf("bad limit %d: got error %v", i, err)
		}
	}
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("a folder: got error %v", err)
	}
	tok, err := Load(path, WithMaxTextBytes(10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("0123456789", false); err != nil {
		t.Errorf("text at the limit: %v", err)
	}
	tests := []struct {
		text, want string
	}{
		{"0123456789a", "a text of 11 bytes is longer than the limit of 10"},
		{"ab\xffc", `text "ab\xffc" is not valid UTF-8`},
	}
	for i, tt := range tests {
		_, err := tok.Encode(tt.text, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("test %d: got error %v, want one containing %q", i, err, tt.want)
			continue
		}
		checkOneLine(t, err, path)
	}
	if _, err := tok.Decode([]int64{-1}, false); err == nil || !strings.Contains(err.Error(), "token id -1 at position 0 is outside the vocabulary of 269") {
		t.Errorf("negative id: got error %v", err)
	}
}

// TestLoadConfig checks that tokenizer_config.json beside tokenizer.json
// names the special tokens, and that a broken one is an error.
func TestLoadConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bert-tiny", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "tokenizer_config.json")
	if err := os.WriteFile(cfg, []byte(`{"bos_token": {"content": "[MASK]"}, "eos_token": "[CLS]", "pad_token": "[PAD]"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 4 || tok.EOS() != 2 || tok.PadID() != 0 {
		t.Errorf("special ids: got bos %d eos %d pad %d want 4 2 0", tok.BOS(), tok.EOS(), tok.PadID())
	}
	if err := os.WriteFile(cfg, []byte(`{"bos_token": `), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), "tokenizer_config.json: file: invalid JSON") {
		t.Fatalf("broken tokenizer_config.json: got error %v", err)
	}
	checkOneLine(t, err, cfg)
}
