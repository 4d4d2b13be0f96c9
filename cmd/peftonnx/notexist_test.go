package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/npy"
	"github.com/peftonnx/peftonnx/rewrite"
)

// TestMissingFileIsNotExist runs each command as dispatch does (its run
// function) with one input file missing: a model, its external data, an
// adapter, a data, eval or .npy file, a tokenizer. The error it returns,
// the one that main prints, must be fs.ErrNotExist for errors.Is, so
// that a program driving these paths can tell a missing file apart.
func TestMissingFileIsNotExist(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	m, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(at("base.onnx"), graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(at("ext.onnx"), graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	os.Remove(at("ext.onnx.data"))
	cfg := adapter.DefaultLoRAConfig(".*c_attn")
	cfg.R = 2
	if _, _, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(at("lora.onnx"), graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	ids, err := npy.New([]int64{1, 4}, []int64{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := npy.WriteFile(at("ids.npy"), ids); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(at("data.jsonl"), []byte(`{"input_ids": [1, 2, 3, 4]}`+"\n"), 0o644)
	tok := filepath.Join("..", "..", "tokenizer", "testdata", "gpt2-tiny", "tokenizer.json")
	nope := at("nope.onnx")
	out := at("out")
	tests := []struct {
		reason string
		args   []string // the command's name and its arguments
	}{
		// Each case names one missing file: "nope..." or ext.onnx's data,
		// tokenizer.json in dir.
		{"inspect: model", []string{"inspect", nope}},
		{"inspect: external data", []string{"inspect", at("ext.onnx")}},
		{"inject: model", []string{"inject", nope, "-o", out + ".onnx", "--target", ".*"}},
		{"prefix: model", []string{"prefix", nope, "-o", out + ".onnx", "--tokens", "2"}},
		{"apply: base", []string{"apply", nope, "--adapter", at("nope"), "-o", out + ".onnx"}},
		{"apply: adapter", []string{"apply", at("base.onnx"), "--adapter", at("nope"), "-o", out + ".onnx"}},
		{"merge: model", []string{"merge", nope, "-o", out + ".onnx"}},
		{"merge: adapter", []string{"merge", at("base.onnx"), "--adapter", at("nope"), "-o", out + ".onnx"}},
		{"unmerge: model", []string{"unmerge", nope, "--adapter", at("nope"), "-o", out + ".onnx"}},
		{"unmerge: adapter", []string{"unmerge", at("base.onnx"), "--adapter", at("nope"), "-o", out + ".onnx"}},
		{"export-adapter: model", []string{"export-adapter", nope, "--out", out}},
		{"quantize: model", []string{"quantize", nope, "-o", out + ".onnx"}},
		{"quantize: external data", []string{"quantize", at("ext.onnx"), "-o", out + ".onnx"}},
		{"combine: adapter", []string{"combine", at("nope1"), at("nope2"), "-o", out, "--method", "linear"}},
		{"shards split: adapter", []string{"shards", "split", at("nope"), "--degree", "2", "-o", out}},
		{"shards merge: shards", []string{"shards", "merge", at("nope"), "-o", out}},
		{"run: model", []string{"run", nope, "--input", "input_ids=" + at("ids.npy"), "--output-dir", out}},
		{"run: .npy input", []string{"run", at("base.onnx"), "--input", "input_ids=" + at("nope.npy"), "--output-dir", out}},
		{"run: adapter", []string{"run", at("base.onnx"), "--input", "input_ids=" + at("ids.npy"), "--adapter", at("nope"), "--output-dir", out}},
		{"generate: model", []string{"generate", nope, "--tokenizer", tok, "--prompt", "hi"}},
		{"generate: tokenizer", []string{"generate", at("base.onnx"), "--tokenizer", at("tokenizer.json"), "--prompt", "hi"}},
		{"train: model", []string{"train", nope, "--data", at("data.jsonl"), "--out", out}},
		{"train: data", []string{"train", at("lora.onnx"), "--data", at("nope.jsonl"), "--out", out}},
		{"train: eval", []string{"train", at("lora.onnx"), "--data", at("data.jsonl"), "--eval", at("nope.jsonl"), "--out", out}},
		{"train: tokenizer", []string{"train", at("lora.onnx"), "--data", at("data.jsonl"), "--tokenizer", at("tokenizer.json"), "--out", out}},
	}
	for i, test := range tests {
		c := commands[test.args[0]]
		err := c.run(&context{cmd: c, stdout: io.Discard, stderr: io.Discard}, test.args[1:])
		var pe *fs.PathError
		if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &pe) {
			t.Errorf("test %d (%s): got %v, want an error that is fs.ErrNotExist", i, test.reason, err)
			continue
		}
		if base := filepath.Base(pe.Path); base != "ext.onnx.data" && base != "tokenizer.json" && !strings.HasPrefix(base, "nope") {
			t.Errorf("test %d (%s): got %v, want the missing file named, not %s", i, test.reason, err, pe.Path)
		}
	}
}
