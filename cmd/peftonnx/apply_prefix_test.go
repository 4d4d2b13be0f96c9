package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// prefixCase is a decoder, a prefix command line for it, and inputs that
// the prefixed model takes.
type prefixCase struct {
	name string
	// base writes the base model into dir, or finds it, and returns its
	// path.
	base   func(t *testing.T, dir string) string
	prefix []string // flags for prefix
	apply  []string // flags for apply that reproduce the prefixed model
	feeds  func(t *testing.T) map[string]*ortrt.Tensor
	// withPast reports past inputs, so that the base model takes feeds too.
	withPast bool
}

// builderBase writes the tiny LLaMA builder model (models.LlamaTiny).
func builderBase(t *testing.T, dir string) string { return savedLlama(t, dir, "base.onnx", false) }

// genaiBase finds the real onnxruntime-genai export.
func genaiBase(t *testing.T, _ string) string { return sharedModel(t, "tiny-llama-genai-fp16") }

var prefixCases = []prefixCase{
	{name: "llama-builder", base: builderBase,
		prefix: []string{"--tokens", "3", "--seed", "2"},
		feeds:  func(t *testing.T) map[string]*ortrt.Tensor { return decoderFeeds(t, 2, 4, 2, 3, false) }, withPast: true},
	{name: "llama-builder-projection-fp16", base: builderBase,
		prefix: []string{"--tokens", "2", "--projection", "--projection-hidden", "5", "--dtype", "float16", "--dropout", "0.1", "--seed", "3"},
		feeds:  func(t *testing.T) map[string]*ortrt.Tensor { return decoderFeeds(t, 2, 4, 2, 3, false) }, withPast: true},
	{name: "llama-builder-replace-past", base: builderBase,
		prefix: []string{"--tokens", "2", "--replace-past", "--seed", "4"}, apply: []string{"--replace-past"},
		feeds: func(t *testing.T) map[string]*ortrt.Tensor {
			feeds := decoderFeeds(t, 2, 4, 0, 3, false)
			for name := range feeds {
				if strings.HasPrefix(name, "past_key_values.") {
					delete(feeds, name)
				}
			}
			return feeds
		}},
	// The genai export takes several tokens only with an empty past, and
	// the prefix is a past: one token, after a past of 2.
	{name: "tiny-llama-genai-fp16", base: genaiBase,
		prefix: []string{"--tokens", "4", "--seed", "5"},
		feeds:  func(t *testing.T) map[string]*ortrt.Tensor { return decoderFeeds(t, 1, 16, 2, 1, true) }, withPast: true},
}

// decoderFeeds returns inputs for a two-layer decoder with per-layer past
// inputs of kvHeads heads of width headDim: pastLen cached positions
// (random values) and seq new tokens, batch 1, the past in float16 where
// fp16 is set.
func decoderFeeds(t *testing.T, kvHeads, headDim, pastLen, seq int, fp16 bool) map[string]*ortrt.Tensor {
	t.Helper()
	must := func(x *ortrt.Tensor, err error) *ortrt.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	rng := rand.New(rand.NewPCG(3, uint64(pastLen*10+seq)))
	ids, pos := make([]int64, seq), make([]int64, seq)
	for i := range ids {
		ids[i] = int64(1 + rng.IntN(30))
		pos[i] = int64(pastLen + i)
	}
	mask := make([]int64, pastLen+seq)
	for i := range mask {
		mask[i] = 1
	}
	feeds := map[string]*ortrt.Tensor{
		"input_ids":      must(ortrt.NewInt64([]int64{1, int64(seq)}, ids)),
		"position_ids":   must(ortrt.NewInt64([]int64{1, int64(seq)}, pos)),
		"attention_mask": must(ortrt.NewInt64([]int64{1, int64(pastLen + seq)}, mask)),
	}
	shape := []int64{1, int64(kvHeads), int64(pastLen), int64(headDim)}
	for i := range 2 {
		for _, kv := range []string{"key", "value"} {
			v := make([]float32, kvHeads*pastLen*headDim)
			for j := range v {
				v[j] = rng.Float32()*2 - 1
			}
			name := fmt.Sprintf("past_key_values.%d.%s", i, kv)
			if fp16 {
				feeds[name] = must(ortrt.NewFloat16FromFloat32(shape, v))
			} else {
				feeds[name] = must(ortrt.NewFloat32(shape, v))
			}
		}
	}
	return feeds
}

// prefixedModel runs prefix on base with c's flags and export-adapter on
// the result, in dir: it returns the prefixed model, the adapter directory
// and the summary line that prefix printed.
func prefixedModel(t *testing.T, c prefixCase, base, dir string) (prefixed, adapterDir, summary string) {
	t.Helper()
	prefixed = filepath.Join(dir, "prefixed.onnx")
	stdout := runOK(t, append([]string{"prefix", base, "-o", prefixed}, c.prefix...)...)
	summary, _, _ = strings.Cut(stdout, "\n")
	adapterDir = filepath.Join(dir, "adapter")
	runOK(t, "export-adapter", prefixed, "--out", adapterDir)
	return prefixed, adapterDir, summary
}

// TestApplyPrefixRoundTrip prefixes a decoder, exports its adapter and
// applies that to the base model: the result computes what the prefixed
// model does, and apply reports what prefix reported.
func TestApplyPrefixRoundTrip(t *testing.T) {
	needORT(t)
	for _, c := range prefixCases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			base := c.base(t, dir)
			prefixed, ad, summary := prefixedModel(t, c, base, dir)
			applied := filepath.Join(dir, "applied.onnx")
			stdout := runOK(t, append([]string{"apply", base, "--adapter", ad, "-o", applied}, c.apply...)...)
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if len(lines) != 2 || lines[0] != summary || !summaryLine.MatchString(lines[0]) {
				t.Errorf("got stdout %q, want the summary %q that prefix printed and one more line", stdout, summary)
			}
			where := "in front of the past inputs"
			if slices.Contains(c.apply, "--replace-past") {
				where = "in place of the past inputs"
			}
			if len(lines) == 2 && (!strings.HasPrefix(lines[1], "wrote "+applied+": prefix adapter "+ad+", ") || !strings.HasSuffix(lines[1], where)) {
				t.Errorf("got second line %q", lines[1])
			}
			_, baseExternal := os.Stat(base + ".data")
			if _, err := os.Stat(applied + ".data"); (err == nil) != (baseExternal == nil) {
				t.Errorf("external data: base has %s.data (%v), applied has %s.data (%v)", base, baseExternal == nil, applied, err == nil)
			}

			feeds := c.feeds(t)
			want := runModel(t, prefixed, feeds)
			wantSame(t, "applied vs prefixed", runModel(t, applied, feeds), want, 1e-6)
			if c.withPast {
				if d, err := maxDiff(want, runModel(t, base, feeds)); err != nil || d < 1e-4 {
					t.Errorf("the prefixed model computes what the base does (difference %.3g, %v): the test would prove nothing", d, err)
				}
			}

			// The applied model carries the adapter as it was saved.
			got, err := rewrite.ExtractPrefix(loadModel(t, applied))
			if err != nil {
				t.Fatal(err)
			}
			saved, err := adapter.Load(ad)
			if err != nil {
				t.Fatal(err)
			}
			if *got.Prefix != *saved.Prefix || !slices.Equal(got.Prompt.Data, saved.Prompt.Data) || (got.Projection == nil) != (saved.Projection == nil) {
				t.Errorf("the applied model's prefix differs from the adapter's: config %+v, want %+v", *got.Prefix, *saved.Prefix)
			}
		})
	}
}

// TestApplyPrefixErrors checks what apply refuses with prefix adapters,
// and that a refused apply writes nothing.
func TestApplyPrefixErrors(t *testing.T) {
	dir := t.TempDir()
	base := builderBase(t, dir)
	noCache := savedLlama(t, dir, "nocache.onnx", true)
	prefixed, ad, _ := prefixedModel(t, prefixCases[0], base, dir)
	lora := filepath.Join(dir, "lora.onnx")
	runOK(t, "inject", base, "-o", lora, "--target", ".*q_proj")
	loraAd := filepath.Join(dir, "lora-adapter")
	runOK(t, "export-adapter", lora, "--out", loraAd)

	// A prefix adapter for another model: 1 KV head of width 16.
	other := filepath.Join(dir, "other-adapter")
	cfg := adapter.PrefixConfig{NumPrefixTokens: 2, NumAttentionHeads: 1, NumHiddenLayers: 2, HiddenSize: 16, TaskType: "CAUSAL_LM"}
	wrong := adapter.NewPrefix(cfg)
	wrong.Prompt = adapter.NewTensor([]int64{2, int64(cfg.TableWidth())}, make([]float32, 2*cfg.TableWidth()))
	if err := adapter.SaveDir(other, wrong); err != nil {
		t.Fatal(err)
	}
	// A config without weights.
	configOnly := filepath.Join(dir, "config-only")
	if err := os.MkdirAll(configOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(ad, adapter.HFConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(configOnly, adapter.HFConfigFile), b, 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out", "applied.onnx")
	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"--as-inputs with a prefix adapter", []string{base, "--adapter", ad, "-o", out, "--as-inputs"}, 2, []string{"--as-inputs", ad, "prefix adapter (PREFIX_TUNING)"}},
		{"--replace-past with a LoRA adapter", []string{base, "--adapter", loraAd, "-o", out, "--replace-past"}, 2, []string{"--replace-past is for prefix adapters", loraAd, "LoRA adapter"}},
		{"prefix adapter on a prefixed model", []string{prefixed, "--adapter", ad, "-o", out}, 1, []string{prefixed, "already carries a prefix", "give its base model"}},
		{"prefix adapter on a LoRA model", []string{lora, "--adapter", ad, "-o", out}, 1, []string{lora, "carries LoRA branches", "not both"}},
		{"LoRA adapter on a prefixed model", []string{prefixed, "--adapter", loraAd, "-o", out}, 1, []string{prefixed, "carries a prefix", "not both"}},
		{"prefix adapter on a model without past", []string{noCache, "--adapter", ad, "-o", out}, 1, []string{ad, noCache, "no past key/value inputs"}},
		{"prefix adapter for another model", []string{base, "--adapter", other, "-o", out}, 1, []string{other, "KV heads) is 1", "2 KV heads"}},
		{"prefix config without weights", []string{base, "--adapter", configOnly, "-o", out}, 1, []string{configOnly, adapter.HFWeightsFile}},
	} {
		stdout, errOut, code := cli(t, append([]string{"apply"}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, test.code, test.parts...)
		if _, err := os.Stat(filepath.Dir(out)); err == nil {
			t.Errorf("%s: left %q behind", test.reason, listDir(t, filepath.Dir(out)))
		}
	}
}
