package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
)

// TestTrainFormatPaddle trains one LoRA and one prefix run twice, with
// --format hf and --format paddle: the paddle directories hold PaddleNLP's
// files and no HF ones, they load back to the same adapters as the HF
// directories, and apply, merge and run take them as they take those.
func TestTrainFormatPaddle(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	model := trainTinyLlama(t, dir)
	base := savedLlama(t, dir, "base.onnx", true)
	data := trainCountingData(t, dir, "train.jsonl", 8, 8, 32)
	trainTo := func(model, name, format string) (string, string) {
		out := filepath.Join(dir, name)
		stdout := runOK(t, "train", model, "--data", data, "--out", out, "--steps", "2", "--batch", "4", "--threads", "1", "--format", format)
		return out, stdout
	}
	hf, _ := trainTo(model, "hf", "hf")
	pd, stdout := trainTo(model, "paddle", "paddle")
	if !strings.Contains(stdout, "adapter: "+pd+" (lora_config.json, lora_model_state.pdparams)") {
		t.Errorf("stdout does not name the PaddleNLP files:\n%s", stdout)
	}
	files := listDir(t, pd)
	for _, want := range []string{adapter.PaddleLoRAConfigFile, adapter.PaddleLoRAWeightsFile, "loss.png"} {
		if !slices.Contains(files, want) {
			t.Errorf("%s holds %v, want %s", pd, files, want)
		}
	}
	if slices.Contains(files, adapter.HFConfigFile) || slices.Contains(files, adapter.HFWeightsFile) {
		t.Errorf("%s holds HF files too: %v", pd, files)
	}
	a, b := loadAdapterT(t, hf), loadAdapterT(t, pd)
	if !reflect.DeepEqual(a.Weights, b.Weights) || a.LoRA.R != b.LoRA.R || a.LoRA.Alpha != b.LoRA.Alpha || !slices.Equal(a.LoRA.TargetModules, b.LoRA.TargetModules) {
		t.Errorf("the paddle directory does not load back to the HF directory's adapter")
	}

	// merge, apply and run read the PaddleNLP directory as the HF one.
	merged := func(adapterDir, name string) []byte {
		out := filepath.Join(dir, name)
		runOK(t, "merge", base, "--adapter", adapterDir, "-o", out)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(merged(hf, "m-hf.onnx"), merged(pd, "m-pd.onnx")) {
		t.Errorf("merge --adapter gives other models for the hf and paddle directories")
	}
	runOK(t, "apply", base, "--adapter", pd, "-o", filepath.Join(dir, "applied.onnx"))
	ids := writeNpy(t, dir, "ids.npy", []int64{1, 4}, []int64{1, 2, 3, 4})
	logits := func(adapterDir, name string) []byte {
		out := filepath.Join(dir, name)
		if _, stderr, code := cli(t, "run", base, "--adapter", adapterDir, "--input", "input_ids="+ids, "--defaults", "--output-dir", out, "--threads", "1"); code != 0 {
			t.Fatalf("run --adapter %s: status %d, %s", adapterDir, code, stderr)
		}
		b, err := os.ReadFile(filepath.Join(out, "logits.npy"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(logits(hf, "run-hf"), logits(pd, "run-pd")) {
		t.Errorf("run --adapter gives other logits for the hf and paddle directories")
	}

	// A prefix: prefix_config.json, prefix_model_state.pdparams and
	// pre_caches.npy, and export-adapter --format paddle writes the same.
	prefixBase := savedLlama(t, dir, "prefix-base.onnx", false)
	prefixed := filepath.Join(dir, "prefixed.onnx")
	runOK(t, "prefix", prefixBase, "-o", prefixed, "--tokens", "2")
	phf, _ := trainTo(prefixed, "prefix-hf", "hf")
	ppd, _ := trainTo(prefixed, "prefix-paddle", "paddle")
	files = listDir(t, ppd)
	for _, want := range []string{adapter.PaddlePrefixConfigFile, adapter.PaddlePrefixWeightsFile, adapter.PaddlePreCachesFile} {
		if !slices.Contains(files, want) {
			t.Errorf("%s holds %v, want %s", ppd, files, want)
		}
	}
	pa, pb := loadAdapterT(t, phf), loadAdapterT(t, ppd)
	if !reflect.DeepEqual(pa.Prompt, pb.Prompt) {
		t.Errorf("the paddle prefix directory does not load back to the HF one's prompt")
	}
	exported := filepath.Join(dir, "exported")
	out := runOK(t, "export-adapter", prefixed, "--out", exported, "--format", "paddle")
	if !strings.Contains(out, "PaddleNLP directory") || !slices.Contains(listDir(t, exported), adapter.PaddlePreCachesFile) {
		t.Errorf("export-adapter --format paddle: %q, files %v", out, listDir(t, exported))
	}
	o, e, code := cli(t, "train", model, "--data", data, "--out", filepath.Join(dir, "x"), "--format", "npz")
	wantError(t, "bad format", o, e, code, 2, "--format must be hf or paddle")
}
