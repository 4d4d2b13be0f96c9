package main

import (
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// TestOpenAdaptedPrefix checks that the session records the prefix that
// the model carries, from its file or from a prefix adapter.
func TestOpenAdaptedPrefix(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	base := builderBase(t, dir)
	prefixed, ad, _ := prefixedModel(t, prefixCases[0], base, dir)
	for _, test := range []struct {
		model, adapter string
		tokens         int // 0: no prefix
	}{
		{base, "", 0},
		{prefixed, "", 3},
		{base, ad, 3},
	} {
		sess, err := openAdapted(test.model, test.adapter, ortrt.WithIntraOpThreads(1))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		if sess.Prefix != nil {
			got = sess.Prefix.Config.NumPrefixTokens
		}
		if got != test.tokens {
			t.Errorf("%s with adapter %q: got a prefix of %d tokens, want %d", test.model, test.adapter, got, test.tokens)
		}
		sess.Close()
	}
}

// TestGeneratePrefixAdapter generates with a prefix adapter applied in
// memory: the text is the prefixed model's, and not the base model's.
func TestGeneratePrefixAdapter(t *testing.T) {
	needORT(t)
	real, tok := tinyLlama(t)
	dir := t.TempDir()

	// The builder's LLaMA with the tokenizer's vocabulary, so that it
	// generates text; it takes a prompt of several tokens after the prefix.
	c := models.LlamaTiny()
	c.VocabSize = 32000
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	builder := filepath.Join(dir, "llama.onnx")
	if err := m.Save(builder, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, test := range []struct {
		name, base, prompt string
	}{
		{"llama-builder", builder, "Once upon a time"},
		// The genai export takes several tokens only with an empty past,
		// and the prefix is a past: the empty prompt is one token (BOS),
		// and generation goes on one token per run.
		{"tiny-llama-genai-fp16", real, ""},
	} {
		sub := filepath.Join(dir, test.name)
		prefixed, ad, _ := prefixedModel(t, prefixCase{prefix: []string{"--tokens", "3", "--seed", "7"}}, test.base, sub)
		args := []string{"--tokenizer", tok, "--prompt", test.prompt, "--max-new-tokens", "8", "--ignore-eos"}
		want, _, n := generate(t, append([]string{prefixed}, args...)...)
		got, _, _ := generate(t, append([]string{test.base, "--adapter", ad}, args...)...)
		if got != want {
			t.Errorf("%s: with --adapter got %q, want the prefixed model's %q", test.name, got, want)
		}
		if n != "8" {
			t.Errorf("%s: generated %s tokens, want 8", test.name, n)
		}
		if base, _, _ := generate(t, append([]string{test.base}, args...)...); base == want {
			t.Errorf("%s: the prefixed model generates the base model's text %q: the test would prove nothing", test.name, base)
		}
	}
}
