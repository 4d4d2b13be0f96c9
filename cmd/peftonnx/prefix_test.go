package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// savedLlama writes the tiny LLaMA builder model (or its cache-less
// variant) to dir and returns its path.
func savedLlama(t *testing.T, dir, name string, noCache bool) string {
	t.Helper()
	c := models.LlamaTiny()
	c.NoCache = noCache
	return saveBuilt(t, dir, name, func() (*graph.Model, error) { return models.Llama(c) })
}

// dirNames returns the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func TestPrefixCommand(t *testing.T) {
	dir := t.TempDir()
	base := savedLlama(t, dir, "base.onnx", false)
	out := filepath.Join(dir, "out.onnx")
	adDir := filepath.Join(dir, "adapter")
	stdout, stderr, code := cli(t, "prefix", base, "-o", out, "--tokens", "3", "--seed", "2", "--adapter-out", adDir)
	if code != 0 || stderr != "" {
		t.Fatalf("got status %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	// P·layers·2·kv_heads·head_dim = 3·2·2·2·4 = 96 of 6480+96.
	want := []string{
		"trainable params: 96 || all params: 6,576 || trainable%: 1.4599",
		"wrote " + out + ": prefix of 3 tokens on 2 layers (2 KV heads of width 4), in front of the past inputs",
		"wrote adapter " + adDir,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, strings.Join(want, "\n"))
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"adapter", "base.onnx", "out.onnx"}) {
		t.Errorf("files: got %q, want the base, the output and the adapter only", got)
	}
	m, err := graph.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sum, err := rewrite.SummarizePrefix(m)
	if err != nil {
		t.Fatal(err)
	}
	if sum.String() != lines[0] {
		t.Errorf("summary of the saved model: got %q, printed %q", sum, lines[0])
	}
	inModel, err := rewrite.ExtractPrefix(m)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := adapter.LoadDir(adDir)
	if err != nil {
		t.Fatal(err)
	}
	if *saved.Prefix != *inModel.Prefix || !slices.Equal(saved.Prompt.Data, inModel.Prompt.Data) {
		t.Errorf("adapter dir and model disagree: config %+v and %+v", *saved.Prefix, *inModel.Prefix)
	}
	// The same seed gives the same prefix.
	again := filepath.Join(dir, "again.onnx")
	if _, stderr, code := cli(t, "prefix", base, "-o", again, "--tokens", "3", "--seed", "2"); code != 0 {
		t.Fatalf("second run: status %d, stderr %q", code, stderr)
	}
	m2, err := graph.Load(again)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	ad2, err := rewrite.ExtractPrefix(m2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ad2.Prompt.Data, inModel.Prompt.Data) {
		t.Errorf("--seed 2 twice gave different prompt_embeddings")
	}
}

// TestPrefixCommandRealModels prefixes the real exports: the fp16 LLaMA
// keeps its external data, and the stacked-past GPT-2 takes a projection,
// dropout and --replace-past. Each output runs in ONNX Runtime.
func TestPrefixCommandRealModels(t *testing.T) {
	dir := t.TempDir()

	llama := sharedModel(t, "tiny-llama-genai-fp16")
	out := filepath.Join(dir, "llama", "prefixed.onnx")
	stdout, stderr, code := cli(t, "prefix", llama, "-o", out, "--tokens", "4")
	if code != 0 {
		t.Fatalf("tiny-llama: status %d, stderr %q", code, stderr)
	}
	// 4·2·2·1·16 = 256 prefix values.
	if !strings.HasPrefix(stdout, "trainable params: 256 || all params: 1,065,296 || ") {
		t.Errorf("tiny-llama: stdout %q", stdout)
	}
	if _, err := os.Stat(out + ".data"); err != nil {
		t.Errorf("tiny-llama keeps its weights outside the model, so should the output: %v", err)
	}
	feeds := modelFeeds(t, "tiny-llama-genai-fp16")
	// The genai export's causal mask allows a multi-token input only
	// with an empty past; the prefix is a past, so run one token.
	for _, name := range []string{"input_ids", "attention_mask", "position_ids"} {
		v := feeds[name].Int64()[:1]
		x, err := ortrt.NewInt64([]int64{1, 1}, v)
		if err != nil {
			t.Fatal(err)
		}
		feeds[name] = x
	}
	res := runModel(t, out, feeds)
	if got := len(res["present.0.key"]); got != 16 {
		t.Errorf("tiny-llama: present.0.key holds %d values, want one position of 16 (the prefix is left out)", got)
	}

	gpt2 := sharedModel(t, "gpt2-past-torch16")
	out = filepath.Join(dir, "gpt2.onnx")
	stdout, stderr, code = cli(t, "prefix", gpt2, "-o", out, "--tokens", "2", "--projection", "--projection-hidden", "3", "--dropout", "0.1", "--replace-past")
	if code != 0 {
		t.Fatalf("gpt2-past: status %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "prefix of 2 tokens on 12 layers (2 KV heads of width 2), in place of the past inputs") {
		t.Errorf("gpt2-past: stdout %q", stdout)
	}
	m, err := graph.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Input("past_0") != nil || m.Input(rewrite.PrefixTrainingModeInput) == nil {
		t.Errorf("gpt2-past: want no past_0 input and a %s input", rewrite.PrefixTrainingModeInput)
	}
	ids, err := ortrt.NewInt64([]int64{2, 1}, []int64{11, 7})
	if err != nil {
		t.Fatal(err)
	}
	res = runModel(t, out, map[string]*ortrt.Tensor{"input_ids": ids})
	// Present holds this run's one position only: [2, batch 2, 2, 1, 2].
	if got := len(res["present_0"]); got != 16 {
		t.Errorf("gpt2-past: present_0 holds %d values, want 16", got)
	}
}

func TestPrefixCommandErrors(t *testing.T) {
	dir := t.TempDir()
	base := savedLlama(t, dir, "base.onnx", false)
	noCache := savedLlama(t, dir, "nocache.onnx", true)
	out := filepath.Join(dir, "out.onnx")
	for _, tc := range []struct {
		reason string
		args   []string
		code   int
		want   []string
	}{
		{"no past inputs", []string{noCache, "-o", out, "--tokens", "2"}, 1, []string{noCache, "no past key/value inputs"}},
		{"layers mismatch", []string{base, "-o", out, "--tokens", "2", "--layers", "3"}, 1, []string{"num_hidden_layers is 3", "2 layers"}},
		{"kv heads mismatch", []string{base, "-o", out, "--tokens", "2", "--kv-heads", "4"}, 1, []string{"KV heads) is 4", "2 KV heads"}},
		{"head dim mismatch", []string{base, "-o", out, "--tokens", "2", "--head-dim", "8"}, 1, []string{"set to 8", "head dim 4"}},
		{"missing model", []string{filepath.Join(dir, "none.onnx"), "-o", out, "--tokens", "2"}, 1, []string{"none.onnx"}},
		{"no tokens", []string{base, "-o", out}, 2, []string{"--tokens must be positive"}},
		{"no output", []string{base, "--tokens", "2"}, 2, []string{"-o OUT is required"}},
		{"width without projection", []string{base, "-o", out, "--tokens", "2", "--projection-hidden", "4"}, 2, []string{"needs --projection"}},
		{"bad dropout", []string{base, "-o", out, "--tokens", "2", "--dropout", "1"}, 2, []string{"--dropout"}},
		{"bad dtype", []string{base, "-o", out, "--tokens", "2", "--dtype", "int8"}, 2, []string{"--dtype"}},
		{"overwrite input", []string{base, "-o", base, "--tokens", "2"}, 1, []string{"would overwrite the input"}},
	} {
		stdout, stderr, code := cli(t, append([]string{"prefix"}, tc.args...)...)
		wantError(t, tc.reason, stdout, stderr, code, tc.code, tc.want...)
		if got := dirNames(t, dir); !slices.Equal(got, []string{"base.onnx", "nocache.onnx"}) {
			t.Errorf("%s: files left: %q", tc.reason, got)
		}
	}
}
