package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/models"
)

// sizes are the model sizes the benchmark knows, smallest first. base has
// GPT-2 small's shape (models.LlamaBase); the others scale it down.
var sizes = []struct {
	name string
	cfg  func() models.LlamaConfig
}{
	{"tiny", models.LlamaTiny},
	{"mini", models.LlamaMini},
	{"small", func() models.LlamaConfig {
		// A quarter of base: hidden 384, 6 layers, 6 heads over 2 KV
		// heads, MLP 1536, GPT-2's vocabulary.
		return models.LlamaConfig{Core: models.Core{VocabSize: 50257, Hidden: 384, Layers: 6, Heads: 6, Seed: 1}, KVHeads: 2, Intermediate: 1536}
	}},
	{"base", models.LlamaBase},
}

// sizeNames lists the names of sizes.
func sizeNames() []string {
	var s []string
	for _, z := range sizes {
		s = append(s, z.name)
	}
	return s
}

// modelConfig returns the config of the named size, without a KV cache:
// training and the benchmarked forward passes run without one.
func modelConfig(name string) (models.LlamaConfig, error) {
	for _, z := range sizes {
		if z.name == name {
			c := z.cfg()
			c.NoCache = true
			return c, nil
		}
	}
	return models.LlamaConfig{}, fmt.Errorf("peftbench: unknown model size %q (want %s)", name, strings.Join(sizeNames(), ", "))
}

// Spec is one exported setup: a model, a LoRA config, the training
// hyperparameters and the batches. Both workers read it from the export
// folder's config.json, so that they run the same thing.
type Spec struct {
	Size  string    `json:"size"`
	Model ModelSpec `json:"model"`
	LoRA  LoRASpec  `json:"lora"`
	Train TrainSpec `json:"train"`
	// Batch and Seq shape each batch; Batches is how many distinct batches
	// the data holds (steps cycle through them).
	Batch   int    `json:"batch"`
	Seq     int    `json:"seq"`
	Batches int    `json:"batches"`
	Seed    uint64 `json:"seed"`
	// RandomB starts B from small random values instead of zeros, so that
	// the first step already has a gradient for A (a stricter parity
	// check than HF's init).
	RandomB bool `json:"random_b,omitempty"`
	// LoRAFile is the initial adapter's file in ModelDir; export sets it.
	LoRAFile string `json:"lora_file,omitempty"`
	// ModelDir is the folder that holds the model's files (weights, the
	// ONNX model, the initial adapter), shared by every run of the same
	// model; export sets it.
	ModelDir string `json:"model_dir,omitempty"`
}

// ModelSpec is what torch_llama.py needs to build the model.
type ModelSpec struct {
	VocabSize    int     `json:"vocab_size"`
	Hidden       int     `json:"hidden"`
	Layers       int     `json:"layers"`
	Heads        int     `json:"heads"`
	KVHeads      int     `json:"kv_heads"`
	Intermediate int     `json:"intermediate"`
	RMSNormEps   float64 `json:"rms_norm_eps"`
	RopeTheta    float64 `json:"rope_theta"`
	Params       int64   `json:"params"`
}

// LoRASpec is the adapter: rank, alpha and the attention projections it
// targets in every layer.
type LoRASpec struct {
	R       int      `json:"r"`
	Alpha   float64  `json:"alpha"`
	Targets []string `json:"targets"`
	Dropout float64  `json:"dropout"`
}

// TrainSpec holds HF Trainer's settings for the run: AdamW at LR on a
// linear schedule over Steps with Warmup, clipping at Clip.
type TrainSpec struct {
	LR     float64 `json:"lr"`
	Steps  int     `json:"steps"`
	Warmup int     `json:"warmup"`
	Clip   float64 `json:"clip"`
}

// loraTargetsEnv names the environment variable that replaces the LoRA
// targets of every spec (goworker.go lists it).
const loraTargetsEnv = "PEFTBENCH_LORA_TARGETS"

// newSpec returns the spec of a run on the named size: LoRA on q_proj and
// v_proj, or on the modules that loraTargetsEnv lists.
func newSpec(size string, batch, seq, steps int) (Spec, error) {
	c, err := modelConfig(size)
	if err != nil {
		return Spec{}, err
	}
	eps, theta := c.RMSNormEps, c.RopeTheta
	if eps == 0 {
		eps = 1e-6
	}
	if theta == 0 {
		theta = 10000
	}
	kv := c.KVHeads
	if kv == 0 {
		kv = c.Heads
	}
	targets := []string{"q_proj", "v_proj"}
	if v := os.Getenv(loraTargetsEnv); v != "" {
		targets = strings.Split(v, ",")
		if slices.Contains(targets, "") {
			return Spec{}, fmt.Errorf("peftbench: %s=%q: want module names separated by commas", loraTargetsEnv, v)
		}
	}
	return Spec{
		Size: size,
		Model: ModelSpec{VocabSize: c.VocabSize, Hidden: c.Hidden, Layers: c.Layers, Heads: c.Heads, KVHeads: kv,
			Intermediate: c.Intermediate, RMSNormEps: eps, RopeTheta: theta, Params: c.NumParams()},
		LoRA:    LoRASpec{R: 8, Alpha: 16, Targets: targets},
		Train:   TrainSpec{LR: 1e-3, Steps: steps, Warmup: 0, Clip: 1.0},
		Batch:   batch,
		Seq:     seq,
		Batches: 4,
		Seed:    42,
	}, nil
}

// key names the export folder of s: its size and shape, and a hash of the
// whole spec.
func (s Spec) key() string {
	s.ModelDir, s.LoRAFile = "", ""
	rb := ""
	if s.RandomB {
		rb = "-rb"
	}
	return fmt.Sprintf("%s-b%d-s%d%s-%s", s.Size, s.Batch, s.Seq, rb, hash(s))
}

// modelKey names the folder of the model files of s: what the weights and
// the initial adapter depend on.
func (s Spec) modelKey() string {
	return fmt.Sprintf("model-%s-%s", s.Size, hash(struct {
		M ModelSpec
		L LoRASpec
		S uint64
	}{s.Model, s.LoRA, s.Seed}))
}

// loraFile names the file of the initial adapter in the model's folder.
func (s Spec) loraFile() string {
	if s.RandomB {
		return "lora_init_random_b.safetensors"
	}
	return "lora_init.safetensors"
}

// hash returns a short hex digest of v's JSON.
func hash(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:4])
}

// targetRegexps returns the InjectLoRA targets of s.
func (s Spec) targetRegexps() []string {
	var t []string
	for _, m := range s.LoRA.Targets {
		t = append(t, ".*"+m)
	}
	return t
}

// modelConfig returns the models.LlamaConfig of s.
func (s Spec) modelConfig() models.LlamaConfig {
	c, _ := modelConfig(s.Size)
	return c
}

// tokens returns the batches of s, [Batches][Batch·Seq] token ids drawn
// uniformly from the vocabulary, a function of the seed alone. Labels
// are the ids themselves and every position is attended.
func (s Spec) tokens() [][]int64 {
	rng := rand.New(rand.NewPCG(s.Seed, uint64(s.Model.VocabSize)))
	out := make([][]int64, s.Batches)
	for i := range out {
		b := make([]int64, s.Batch*s.Seq)
		for j := range b {
			b[j] = int64(rng.IntN(s.Model.VocabSize))
		}
		out[i] = b
	}
	return out
}

// positions returns position ids 0…Seq-1 for every row.
func (s Spec) positions() []int64 {
	p := make([]int64, s.Batch*s.Seq)
	for i := range p {
		p[i] = int64(i % s.Seq)
	}
	return p
}

// ones returns an attention mask with every position attended.
func (s Spec) ones() []int64 {
	return slices.Repeat([]int64{1}, s.Batch*s.Seq)
}
