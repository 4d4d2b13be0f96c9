package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
)

// The files of a run's folder and of a model's folder.
const (
	specFile    = "config.json"         // run: the Spec, read by both workers
	dataFile    = "data.safetensors"    // run: input_ids [batches, batch, seq] int64
	baseFile    = "base.onnx"           // model: the Go builder's model, weights in base.onnx.data
	weightsFile = "weights.safetensors" // model: the same weights, for PyTorch, named as the initializers
	doneFile    = "complete"            // both: written last, the folder is whole
)

// loraSeed seeds InjectLoRA's draws of A.
const loraSeed = 7

// exportSpec exports the model of size for batches of batch × seq tokens
// and steps steps (newSpec) into root, as export does, and returns its
// folder.
func exportSpec(root, size string, batch, seq, steps int) (string, error) {
	s, err := newSpec(size, batch, seq, steps)
	if err != nil {
		return "", err
	}
	return export(root, s)
}

// export writes the files of s under root unless they are there already,
// and returns the run's folder, root/<s.key()>, which holds config.json
// and the batches. The model's files go to root/<s.modelKey()>, shared by
// every run of the same model.
func export(root string, s Spec) (string, error) {
	dir := filepath.Join(root, s.key())
	if _, err := os.Stat(filepath.Join(dir, doneFile)); err == nil {
		return dir, nil
	}
	mdir, err := exportModel(filepath.Join(root, s.modelKey()), s)
	if err != nil {
		return "", err
	}
	if s.ModelDir, err = filepath.Abs(mdir); err != nil {
		return "", err
	}
	s.LoRAFile = s.loraFile()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("peftbench: %w", err)
	}
	var ids []int64
	for _, b := range s.tokens() {
		ids = append(ids, b...)
	}
	data := map[string]stTensor{"input_ids": {Shape: []int64{int64(s.Batches), int64(s.Batch), int64(s.Seq)}, I64: ids}}
	if err := writeSafetensors(filepath.Join(dir, dataFile), data, nil); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, specFile), b); err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, doneFile), nil); err != nil {
		return "", err
	}
	return dir, nil
}

// exportModel writes the model files of s into dir unless they are there:
// the ONNX model with its weights as external data, the same weights as
// safetensors for PyTorch, and the initial adapter (s.loraFile(), A
// [in, r] and B [r, out] of every site).
func exportModel(dir string, s Spec) (string, error) {
	lora := filepath.Join(dir, s.loraFile())
	if _, err := os.Stat(filepath.Join(dir, doneFile)); err == nil {
		if _, err := os.Stat(lora); err == nil {
			return dir, nil
		}
		m, err := graph.Load(filepath.Join(dir, baseFile))
		if err != nil {
			return "", err
		}
		defer m.Close()
		return dir, writeLoRA(lora, m, s)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("peftbench: %w", err)
	}
	logf("exporting the %s model (%s parameters) to %s", s.Size, human(s.Model.Params), dir)
	m, err := models.Llama(s.modelConfig())
	if err != nil {
		return "", err
	}
	w, err := models.WeightsOf(m)
	if err != nil {
		return "", err
	}
	st := make(map[string]stTensor, len(w))
	for name, t := range w {
		st[name] = stTensor{Shape: t.Shape, F32: t.Data}
	}
	if err := writeSafetensors(filepath.Join(dir, weightsFile), st, map[string]string{"format": "pt", "layout": "onnx [in, out]"}); err != nil {
		return "", err
	}
	clear(st)
	clear(w)
	if err := m.Save(filepath.Join(dir, baseFile), graph.SaveOptions{ExternalData: true}); err != nil {
		return "", err
	}
	if err := writeLoRA(lora, m, s); err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, doneFile), nil); err != nil {
		return "", err
	}
	return dir, nil
}

// writeLoRA writes the initial adapter of s, injected into m, to path.
func writeLoRA(path string, m *graph.Model, s Spec) error {
	lora, err := initialLoRA(m, s)
	if err != nil {
		return err
	}
	return writeSafetensors(path, lora, nil)
}

// loraConfig returns the adapter config of s for rewrite.InjectLoRA.
func loraConfig(s Spec) adapter.LoRAConfig {
	c := adapter.DefaultLoRAConfig(s.targetRegexps()...)
	c.R = s.LoRA.R
	c.Alpha = s.LoRA.Alpha
	c.Dropout = s.LoRA.Dropout
	return c
}

// initialLoRA injects LoRA into m as peftonnx does (A
// Kaiming-uniform from loraSeed, B zero, or small random values with
// RandomB) and returns the factors by initializer name.
func initialLoRA(m *graph.Model, s Spec) (map[string]stTensor, error) {
	c := m
	_, sum, err := rewrite.InjectLoRA(c, loraConfig(s), rewrite.WithSeed(loraSeed))
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(s.Seed, 99))
	out := map[string]stTensor{}
	for _, name := range sum.LoRA {
		init := c.Initializer(name)
		v, err := c.Float32s(init)
		if err != nil {
			return nil, err
		}
		if s.RandomB && isB(name) {
			for i := range v {
				v[i] = float32(rng.Float64()*0.04 - 0.02)
			}
		}
		out[name] = stTensor{Shape: init.Dims, F32: v}
	}
	return out, nil
}

// isB reports whether an initializer name is a LoRA B factor.
func isB(name string) bool {
	const suf = ".lora_B.weight"
	return len(name) > len(suf) && name[len(name)-len(suf):] == suf
}
