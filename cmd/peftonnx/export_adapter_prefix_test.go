package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
)

// TestExportAdapterPrefix exports the prefix of prefixed models as HF PEFT
// directories: PEFT's config and keys, and the model's tensors as they are.
func TestExportAdapterPrefix(t *testing.T) {
	for _, test := range []struct {
		reason string
		prefix []string
		// stdout is what export-adapter prints, with $TMP for the folder.
		stdout string
	}{
		// 3·(2·2·2·4) = 96 values.
		{"table", []string{"--tokens", "3", "--seed", "2"},
			"wrote $TMP/hf (HF PEFT directory): prefix of 3 tokens on 2 layers (2 KV heads of width 4), 96 params\n"},
		// prompt 2·16, W1 16·5 + 5, W2 5·32 + 32: 309 values.
		{"projection in float16", []string{"--tokens", "2", "--projection", "--projection-hidden", "5", "--dtype", "float16"},
			"wrote $TMP/hf (HF PEFT directory): prefix of 2 tokens on 2 layers (2 KV heads of width 4) through a projection of width 5, 309 params\n"},
		{"in place of the past", []string{"--tokens", "2", "--replace-past"},
			"wrote $TMP/hf (HF PEFT directory): prefix of 2 tokens on 2 layers (2 KV heads of width 4), 64 params\n" +
				"note: $TMP/prefixed.onnx takes the prefix in place of its past inputs, which the adapter does not record: apply it with --replace-past to do the same\n"},
	} {
		dir := t.TempDir()
		base := builderBase(t, dir)
		prefixed := filepath.Join(dir, "prefixed.onnx")
		runOK(t, append([]string{"prefix", base, "-o", prefixed}, test.prefix...)...)
		hf := filepath.Join(dir, "hf")
		if got := tempPaths(runOK(t, "export-adapter", prefixed, "--out", hf), dir); got != test.stdout {
			t.Errorf("%s: got stdout %q, want %q", test.reason, got, test.stdout)
		}
		if got := listDir(t, hf); !slices.Equal(got, []string{adapter.HFConfigFile, adapter.HFWeightsFile}) {
			t.Errorf("%s: got files %q in the HF directory", test.reason, got)
		}
		var cfg map[string]any
		b, err := os.ReadFile(filepath.Join(hf, adapter.HFConfigFile))
		if err == nil {
			err = json.Unmarshal(b, &cfg)
		}
		if err != nil {
			t.Fatal(err)
		}
		if cfg["peft_type"] != "PREFIX_TUNING" || cfg["num_layers"] != 2.0 {
			t.Errorf("%s: adapter_config.json has peft_type %v and num_layers %v, want PREFIX_TUNING and 2", test.reason, cfg["peft_type"], cfg["num_layers"])
		}

		want, err := rewrite.ExtractPrefix(loadModel(t, prefixed))
		if err != nil {
			t.Fatal(err)
		}
		got, err := adapter.Load(hf)
		if err != nil {
			t.Fatal(err)
		}
		if got.Prefix == nil || *got.Prefix != *want.Prefix {
			t.Fatalf("%s: got config %+v, want the model's %+v", test.reason, got.Prefix, *want.Prefix)
		}
		same := func(what string, g, w *adapter.Tensor) {
			if g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !slices.Equal(g.Data, w.Data) {
				t.Errorf("%s: %s: got %s %v, want the model's %s %v, or the values differ", test.reason, what, g.DType, g.Shape, w.DType, w.Shape)
			}
		}
		same("prompt_embeddings", got.Prompt, want.Prompt)
		if (got.Projection == nil) != (want.Projection == nil) {
			t.Fatalf("%s: got projection %v, want %v", test.reason, got.Projection != nil, want.Projection != nil)
		}
		if p, w := got.Projection, want.Projection; p != nil {
			same("W1", p.W1, w.W1)
			same("B1", p.B1, w.B1)
			same("W2", p.W2, w.W2)
			same("B2", p.B2, w.B2)
		}
	}
}

// TestExportAdapterPrefixErrors checks what export-adapter refuses for
// prefixed models, and that a refused export writes nothing.
func TestExportAdapterPrefixErrors(t *testing.T) {
	dir := t.TempDir()
	base := builderBase(t, dir)
	prefixed := filepath.Join(dir, "prefixed.onnx")
	runOK(t, "prefix", base, "-o", prefixed, "--tokens", "2")
	lora := filepath.Join(dir, "lora.onnx")
	runOK(t, "inject", base, "-o", lora, "--target", ".*q_proj")
	mixed := mixedModel(t, lora, prefixed, filepath.Join(dir, "mixed.onnx"))
	out := filepath.Join(dir, "out")
	before := listDir(t, dir)

	for _, test := range []struct {
		reason string
		args   []string
		parts  []string
	}{
		{"onnx_adapter by name", []string{prefixed, "--out", out + ".onnx_adapter"}, []string{prefixed, "carries a prefix", "--format onnx_adapter cannot hold", "--format hf"}},
		{"onnx_adapter by flag", []string{prefixed, "--out", out, "--format", "onnx_adapter"}, []string{prefixed, "--format onnx_adapter cannot hold"}},
		{"LoRA and a prefix", []string{mixed, "--out", out}, []string{mixed, "both LoRA branches and a prefix"}},
		{"neither", []string{base, "--out", out}, []string{base, "carries no LoRA branch", "and no prefix"}},
	} {
		stdout, errOut, code := cli(t, append([]string{"export-adapter"}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, 1, test.parts...)
		if got := listDir(t, dir); !slices.Equal(got, before) {
			t.Errorf("%s: files %q, want %q", test.reason, got, before)
		}
	}
	// The real model takes its prefix into an HF directory only, too.
	if _, err := os.Stat(filepath.Join(sharedModels, "tiny-llama-genai-fp16")); err == nil {
		real := filepath.Join(dir, "real", "prefixed.onnx")
		runOK(t, "prefix", genaiBase(t, ""), "-o", real, "--tokens", "2")
		stdout, errOut, code := cli(t, "export-adapter", real, "--out", out+".onnx_adapter")
		wantError(t, "real model to onnx_adapter", stdout, errOut, code, 1, real, "--format hf")
		if got := listDir(t, filepath.Dir(real)); !slices.Equal(got, []string{"prefixed.onnx", "prefixed.onnx.data"}) || strings.Contains(strings.Join(listDir(t, dir), " "), "onnx_adapter") {
			t.Errorf("real model to onnx_adapter: files %q", got)
		}
	}
}
