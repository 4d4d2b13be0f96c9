package main

import (
	"bytes"
	ctxpkg "context"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
)

// TestTrainGoAPIMatchesCLI: a Go program that injects with a LoRA+ scale,
// trains with train.NewTrainer and saves Trainer.Adapter() gets the same
// adapter, byte for byte, as "peftonnx inject --lora-plus-scale" and
// "peftonnx train" on the same model and data. (Before the trainer read
// the recorded scale itself, the Go program trained B at the plain rate.)
func TestTrainGoAPIMatchesCLI(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "llama.onnx")
	if err := m.Save(base, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	data := trainCountingData(t, dir, "data.jsonl", 16, 8, 32)

	// The command line.
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", base, "-o", adapted, "--target", ".*q_proj", "--target", ".*v_proj", "--r", "4", "--alpha", "8",
		"--lora-plus-scale", "4", "--seed", "7")
	cliOut := filepath.Join(dir, "cli")
	runOK(t, "train", adapted, "--data", data, "--out", cliOut, "--steps", "6", "--batch", "4", "--lr", "1e-2", "--threads", "1")

	// The Go API, with the command's defaults.
	m, err = graph.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cfg := adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj")
	cfg.R, cfg.Alpha, cfg.LoRAPlusScale = 4, 8, 4
	_, sum, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(7))
	if err != nil {
		t.Fatal(err)
	}
	examples, err := train.LoadJSONL(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := train.DefaultOptions()
	opts.Steps, opts.BatchSize, opts.LR = 6, 4, 1e-2
	opts.Session = []ortrt.Option{ortrt.WithIntraOpThreads(1)}
	tr, err := train.NewTrainer(m, sum.Trainable(), examples, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Train(ctxpkg.Background()); err != nil {
		t.Fatal(err)
	}
	ad, err := tr.Adapter()
	if err != nil {
		t.Fatal(err)
	}
	apiOut := filepath.Join(dir, "api")
	if err := adapter.SaveDir(apiOut, ad); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{adapter.HFConfigFile, adapter.HFWeightsFile} {
		got, err := os.ReadFile(filepath.Join(apiOut, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(cliOut, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s of the Go program differs from peftonnx train's (%d bytes, want %d)", name, len(got), len(want))
		}
	}
	if ad.LoRA.LoRAPlusScale != 4 {
		t.Errorf("the trained adapter records lora_plus_scale %v, want 4", ad.LoRA.LoRAPlusScale)
	}
}
