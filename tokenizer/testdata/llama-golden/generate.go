//go:build ignore

// generate writes golden.jsonl: texts and the ids and decodings that the
// OLD tokenizer of peftonnx gave for them on the shared tiny LLaMA
// tokenizer.json. The old tokenizer was train.LoadTokenizer, a wrapper
// over github.com/sugarme/tokenizer v0.3.0 that added byte fallback; it
// was removed when package tokenizer replaced it. To make the file again,
// check out the commit before that (88b61a5) and run, from the module root:
//
//	go run ./tokenizer/testdata/llama-golden/generate.go \
//	    ../shared/models/tiny-llama-genai-fp16/tokenizer.json > tokenizer/testdata/llama-golden/golden.jsonl
//
// (the file is not built with the module: testdata and the ignore tag keep
// it out, and at later commits train.LoadTokenizer no longer exists).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"

	"github.com/peftonnx/peftonnx/train"
)

// record is one line of golden.jsonl.
type record struct {
	Text           string  `json:"text"`
	IDs            []int64 `json:"ids"`             // Encode(text, false)
	IDsSpecial     []int64 `json:"ids_special"`     // Encode(text, true)
	Decoded        string  `json:"decoded"`         // Decode(ids, true)
	DecodedSpecial string  `json:"decoded_special"` // Decode(ids_special, false)
}

func main() {
	tok, err := train.LoadTokenizer(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, text := range corpus() {
		var r record
		r.Text = text
		if r.IDs, err = tok.Encode(text, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if r.IDsSpecial, err = tok.Encode(text, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if r.Decoded, err = tok.Decode(r.IDs, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if r.DecodedSpecial, err = tok.Decode(r.IDsSpecial, false); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

const paragraph = "Once upon a time, in a small village at the edge of a forest, there lived an old " +
	"clockmaker who repaired every clock that anyone brought him. He worked from dawn until late " +
	"at night; his shop smelled of oil and brass. Children pressed their noses to the window to " +
	"watch the tiny gears turn. \"Time,\" he liked to say, \"is the one thing we cannot repair.\" " +
	"In 1887 the river flooded, and the shop (with 312 clocks inside!) was lost.\n\n"

func corpus() []string {
	texts := []string{
		"Hello world", "hello", "Hello, world!", "The quick brown fox jumps over the lazy dog.",
		"", " ", "  ", "a", " a", "a ", "x  y", "tab\there", "line\nbreak", "\r\n",
		"multiple\n\n\nnewlines", "end   ", "   start", "Once upon a time",
		// Special tokens inside text.
		"<s>", "</s>", "<unk>", "Hello</s>world", "a <s> b", "<s><s>", "</s >", "<s", "x<unk>y",
		"<s> Hello", "Hello <s>", "  </s>  ",
		// Unicode.
		"héllo wörld 日本", "日本語のテキストです。", "Привет, мир!", "مرحبا بالعالم", "नमस्ते दुनिया",
		"Ελληνικά γράμματα", "한국어 문장", "ﬁ ligature", "e\u0301 combining", "a\u00a0b nbsp",
		"a\u200bb zero width", "\ufeffbom", "İstanbul ß straße", "▁ literal metaspace ▁▁",
		"<0x41> byte token text", "Ünïcödé ÀÉÎÕÜ", "中文，标点。", "ｆｕｌｌｗｉｄｔｈ",
		// Emoji.
		"😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦 family", "🇺🇸🇯🇵", "I ❤️ Go", "✓ ✗ ✔", "😀😀😀 a 😀",
		// Control characters.
		"\x00", "a\x01b", "\x7f", "\u0085 next line", "bell\a", "\x1b[31mred\x1b[0m",
		// Numbers, punctuation, code.
		"3.14159 2024-01-01 1,000,000", "func main() { fmt.Println(\"hi\") }",
		"<html><body><p>Hi &amp; bye</p></body></html>", "def f(x):\n    return x**2\n",
		`{"key": [1, 2.5, null, true], "s": "v"}`, "https://example.com/path?q=1&r=2#frag",
		"someone@example.org", "!!! ??? ... --- ***", "C++ && C# || F#", "$100 €20 ¥3000 £5",
		"i.e., e.g., etc.", "don't can't won't I'm you're",
		// Whitespace runs.
		strings.Repeat(" ", 3), strings.Repeat(" ", 7), strings.Repeat(" ", 16), "\t\t\t",
		"a" + strings.Repeat(" ", 50) + "b", strings.Repeat("\n", 5), " \t \n \r ", "a \n b \t c",
		// Repetition.
		strings.Repeat("a", 1000), strings.Repeat("ab", 500), strings.Repeat("the ", 300),
		strings.Repeat("😀", 50), strings.Repeat(".", 200), strings.Repeat("ab ", 100) + "end",
	}
	rng := rand.New(rand.NewPCG(16, 2026))
	ranges := [][2]rune{
		{0x20, 0x7e}, {0x20, 0x7e}, {0x20, 0x7e}, {0xa0, 0xff}, {0x370, 0x3ff}, {0x400, 0x4ff},
		{0x4e00, 0x4fff}, {0x3040, 0x30ff}, {0x1f300, 0x1f64f}, {0x0600, 0x06ff}, {0x0900, 0x097f},
		{0x2000, 0x206f}, {0x09, 0x0d},
	}
	for i := 0; i < 40; i++ {
		n := 1 + rng.IntN(200)
		var b strings.Builder
		for j := 0; j < n; j++ {
			r := ranges[rng.IntN(len(ranges))]
			c := r[0] + rune(rng.IntN(int(r[1]-r[0]+1)))
			if c >= 0xd800 && c < 0xe000 {
				c = 'x'
			}
			b.WriteRune(c)
		}
		texts = append(texts, b.String())
	}
	// Long texts: prose of about 10k and 27k characters, and 15k random
	// ASCII words.
	texts = append(texts, strings.Repeat(paragraph, 25)[:10000])
	texts = append(texts, strings.Repeat(paragraph, 66)[:27000])
	var words strings.Builder
	for words.Len() < 15000 {
		n := 1 + rng.IntN(9)
		for j := 0; j < n; j++ {
			words.WriteByte(byte('a' + rng.IntN(26)))
		}
		words.WriteByte(" \n,."[rng.IntN(4)])
	}
	texts = append(texts, words.String())
	return texts
}
