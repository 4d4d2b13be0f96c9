package tokenizer

import (
	"strings"
	"testing"
	"time"
)

// prose is ordinary English text, repeated to the length a test needs.
const prose = "Once upon a time, in a small village at the edge of a forest, there lived an old " +
	"clockmaker who repaired every clock that anyone brought him. He worked from dawn until late " +
	"at night; his shop smelled of oil and brass. Children pressed their noses to the window to " +
	"watch the tiny gears turn. \"Time,\" he liked to say, \"is the one thing we cannot repair.\" " +
	"In 1887 the river flooded, and the shop (with 312 clocks inside!) was lost.\n\n"

// longText returns n bytes of prose.
func longText(n int) string {
	return strings.Repeat(prose, n/len(prose)+1)[:n]
}

// TestEncodeLongText encodes a 100k-character prompt with the Llama
// tokenizer, which has no pre-tokenizer, so the whole text is one BPE
// word: it must come back from Decode, in seconds (the tokenizer this
// package replaced took more than 120 s).
func TestEncodeLongText(t *testing.T) {
	tok := loadLlama(t)
	text := longText(100_000)
	start := time.Now()
	ids, err := tok.Encode(text, true)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("encoding 100k characters took %v", d)
	}
	got, err := tok.Decode(ids, true)
	if err != nil {
		t.Fatal(err)
	}
	if got != text {
		t.Errorf("round trip of 100k characters differs (%d ids)", len(ids))
	}
}

func BenchmarkLoadLlama(b *testing.B) {
	loadLlama(b)
	for b.Loop() {
		if _, err := Load(llamaPath); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeLlama encodes long texts with the Llama tokenizer: prose
// of 40k and 100k characters, and 100k of one letter, where every pair is
// the same.
func BenchmarkEncodeLlama(b *testing.B) {
	tok := loadLlama(b)
	for _, bench := range []struct {
		name, text string
	}{
		{"prose-40k", longText(40_000)},
		{"prose-100k", longText(100_000)},
		{"aaaa-100k", strings.Repeat("a", 100_000)},
	} {
		b.Run(bench.name, func(b *testing.B) {
			b.SetBytes(int64(len(bench.text)))
			for b.Loop() {
				if _, err := tok.Encode(bench.text, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeGPT2 encodes 100k characters of prose with the byte-level
// fixture (many short words).
func BenchmarkEncodeGPT2(b *testing.B) {
	tok := loadFixture(b, "gpt2-tiny")
	text := longText(100_000)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := tok.Encode(text, false); err != nil {
			b.Fatal(err)
		}
	}
}
