package adapter

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// File names of an adapter directory.
const (
	HFConfigFile           = "adapter_config.json"       // HuggingFace PEFT config
	HFWeightsFile          = "adapter_model.safetensors" // HuggingFace PEFT weights
	PaddleLoRAConfigFile   = "lora_config.json"          // PaddleNLP LoRA config
	PaddlePrefixConfigFile = "prefix_config.json"        // PaddleNLP prefix config
)

// Key names in adapter_model.safetensors.
const (
	hfModelPrefix   = "base_model.model."
	hfSuffixA       = ".lora_A.weight"
	hfSuffixB       = ".lora_B.weight"
	hfSuffixEmbA    = ".lora_embedding_A"
	hfSuffixEmbB    = ".lora_embedding_B"
	hfSuffixMag     = ".lora_magnitude_vector.weight" // DoRA, PEFT 0.12 and later
	hfSuffixMagOld  = ".lora_magnitude_vector"        // DoRA, PEFT before 0.12
	hfPromptKey     = "prompt_embeddings"
	hfProjW1, hfB1  = "prefix_encoder.transform.0.weight", "prefix_encoder.transform.0.bias"
	hfProjW2, hfB2  = "prefix_encoder.transform.2.weight", "prefix_encoder.transform.2.bias"
	safetensorsMeta = "pt" // PEFT writes {"format": "pt"}
)

// SaveDir writes a as a HuggingFace PEFT adapter directory:
// adapter_config.json and adapter_model.safetensors, each written in full
// to a temporary file in dir and then renamed, so that an error leaves no
// partial file. dir is created if needed.
//
// LoRA weights are stored in PEFT's layout, transposed from graph layout:
// "base_model.model.<module>.lora_A.weight" [r, in] and
// "base_model.model.<module>.lora_B.weight" [out, r]; an embedding's as
// "base_model.model.<module>.lora_embedding_A" [r, vocab] and
// "….lora_embedding_B" [dim, r]; a convolution's as they are, [r, in, k…]
// and [out, r, 1…]; a DoRA magnitude as "….lora_magnitude_vector.weight"
// [out], as PEFT 0.12 and later name it. Extra tensors are
// stored verbatim as "base_model.model.<name>", which is where PEFT keeps
// biases (bias "all" or "lora_only") and modules_to_save weights.
//
// A prefix adapter stores "prompt_embeddings" [P, layers·2·kv_heads·head_dim]
// and, with a projection, its weights in torch's Linear layout
// "prefix_encoder.transform.0.weight" [projection_hidden, hidden],
// "prefix_encoder.transform.0.bias", "prefix_encoder.transform.2.weight"
// [table width, projection_hidden] and "prefix_encoder.transform.2.bias".
//
// Each tensor is stored as its DType. Config fields that PEFT has no key
// for go in a nested "peftonnx" object of adapter_config.json.
func SaveDir(dir string, a *Adapter) error {
	if err := a.Validate(); err != nil {
		return err
	}
	tensors := tensorSet{}
	add := tensors.add
	var makeConfig func(weightsHash string) ([]byte, error)
	if a.LoRA != nil {
		for _, m := range a.Modules() {
			w := a.Weights[m]
			keyA, keyB, ta, tb := hfLoRATensors(m, w)
			if err := firstErr(add(keyA, ta), add(keyB, tb)); err != nil {
				return err
			}
			if w.Magnitude != nil {
				if err := add(hfModelPrefix+m+hfSuffixMag, w.Magnitude); err != nil {
					return err
				}
			}
		}
		makeConfig = func(hash string) ([]byte, error) { return loraConfigJSON(a.LoRA, modulesToSave(a), hash) }
	} else {
		if err := add(hfPromptKey, a.Prompt); err != nil {
			return err
		}
		if p := a.Projection; p != nil {
			if err := firstErr(add(hfProjW1, p.W1.Transpose()), add(hfB1, p.B1), add(hfProjW2, p.W2.Transpose()), add(hfB2, p.B2)); err != nil {
				return err
			}
		}
		makeConfig = func(hash string) ([]byte, error) { return prefixConfigJSON(a.Prefix, hash) }
	}
	for _, name := range sortedKeys(a.Extra) {
		if err := add(hfModelPrefix+name, a.Extra[name]); err != nil {
			return err
		}
	}
	weights, err := EncodeSafetensors(tensors, map[string]string{"format": safetensorsMeta})
	if err != nil {
		return inFile(err, filepath.Join(dir, HFWeightsFile))
	}
	config, err := makeConfig(weightsHash(weights))
	if err != nil {
		return err
	}
	return writeFilesAtomic(dir, map[string][]byte{HFConfigFile: config, HFWeightsFile: weights})
}

// LoadDir reads an adapter directory into graph layout (see SaveDir and
// SavePaddleDir for the key names and layouts). The config comes from
// adapter_config.json (PEFT, peft_type LORA or PREFIX_TUNING), else from
// PaddleNLP's lora_config.json or prefix_config.json. Weights come from
// adapter_model.safetensors; in a PaddleNLP directory without it, from
// lora_model_state.pdparams or prefix_model_state.pdparams (a lone
// "tp00" shard counts as the whole adapter), else from pre_caches.npy as
// a prefix table, else the adapter holds the config only. The shards of a
// tensor-parallel adapter (tensor_parallel_degree over 1,
// lora_model_state.tp00.pdparams, …) are an error that says to merge them
// first. A key that does not fit (lora_A without lora_B, a rank that
// disagrees with the config's r, an unknown key) is a *FormatError that
// names the file and the key.
//
// PEFT saves a prefix adapter trained with a projection as the projected
// table; LoadDir returns such an adapter without the projection.
func LoadDir(dir string) (*Adapter, error) {
	cfg, hf, cfgPath, err := loadDirConfig(dir)
	if err != nil {
		return nil, err
	}
	a := &Adapter{Extra: map[string]*Tensor{}}
	switch c := cfg.(type) {
	case *LoRAConfig:
		a.LoRA, a.Weights = c, map[string]LoRAWeights{}
	case *PrefixConfig:
		a.Prefix = c
	}
	if err := cfg.validate(); err != nil {
		return nil, formatErrorf(cfgPath, "", "%s config: %w", cfg.kind(), err)
	}
	wpath := filepath.Join(dir, HFWeightsFile)
	if _, err := os.Stat(wpath); errors.Is(err, fs.ErrNotExist) {
		missing := err
		switch {
		case !hf:
			if err := a.loadPaddleWeights(dir); err != nil {
				return nil, err
			}
			return a, nil
		case fileExists(filepath.Join(dir, "adapter_model.bin")):
			return nil, errorf("%s: adapter_model.bin (pickle) is not supported: save the adapter with safe_serialization=True", dir)
		}
		return nil, errorf("%s: %w", dir, pkgerr.Reworded("no "+HFWeightsFile+" beside "+HFConfigFile, missing))
	}
	if err := checkWeightsHash(cfgPath, wpath); err != nil {
		return nil, err
	}
	tensors, _, err := ReadSafetensors(wpath)
	if err != nil {
		return nil, err
	}
	if err := a.fill(tensors, wpath, a.loraFromHF, a.prefixFromHF); err != nil {
		return nil, err
	}
	return a, nil
}

// fill fills a from the tensors of its weights file at path, with lora or
// prefix as a is a LoRA or a prefix adapter, and validates it; an error
// names the file.
func (a *Adapter) fill(tensors map[string]*Tensor, path string, lora, prefix func(map[string]*Tensor) error) error {
	fill := lora
	if a.LoRA == nil {
		fill = prefix
	}
	err := fill(tensors)
	if err == nil {
		err = a.Validate()
	}
	if err != nil {
		return inFile(err, path)
	}
	return nil
}

// loadDirConfig finds and parses the config file of dir.
func loadDirConfig(dir string) (cfg Config, hf bool, path string, err error) {
	var missing error // the error of reading the last config file, which is not there
	for _, name := range []string{HFConfigFile, PaddleLoRAConfigFile, PaddlePrefixConfigFile} {
		path = filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			missing = err
			continue
		}
		if err != nil {
			return nil, false, path, errorf("%w", err)
		}
		f, err := parseJSONFields(path, data)
		if err != nil {
			return nil, false, path, err
		}
		switch name {
		case PaddleLoRAConfigFile:
			cfg, err = parsePaddleLoRAConfig(f)
			return cfg, false, path, err
		case PaddlePrefixConfigFile:
			cfg, err = parsePrefixConfig(f, false)
			return cfg, false, path, err
		}
		var peftType string
		if err := f.stringField("peft_type", &peftType); err != nil {
			return nil, true, path, err
		}
		switch peftType {
		case "LORA":
			cfg, err = parseHFLoRAConfig(f)
		case "PREFIX_TUNING":
			cfg, err = parsePrefixConfig(f, true)
		case "":
			return nil, true, path, f.errorf("peft_type", "missing")
		default:
			return nil, true, path, f.errorf("peft_type", "%q is not supported: want LORA or PREFIX_TUNING", peftType)
		}
		return cfg, true, path, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, false, "", errorf("%w", err)
	}
	return nil, false, "", errorf("%s: %w", dir, pkgerr.Reworded("no "+HFConfigFile+", "+PaddleLoRAConfigFile+" or "+PaddlePrefixConfigFile, missing))
}

// loraFromHF fills a.Weights and a.Extra from PEFT keys, transposing the
// factors to graph layout and checking their ranks against the config.
func (a *Adapter) loraFromHF(tensors map[string]*Tensor) error {
	keys := loraKeys{prefix: hfModelPrefix, suffixA: hfSuffixA, suffixB: hfSuffixB, layoutA: "[r, in]", layoutB: "[out, r]", convs: true}
	embeddings := map[string]*Tensor{}
	magnitudes := map[string]*Tensor{}
	pairs, err := keys.pair(tensors, func(key, rest string) error {
		switch {
		case strings.HasSuffix(rest, hfSuffixMag) || strings.HasSuffix(rest, hfSuffixMagOld):
			m := strings.TrimSuffix(strings.TrimSuffix(rest, hfSuffixMag), hfSuffixMagOld)
			if magnitudes[m] != nil {
				return formatErrorf("", key, "module %q has its DoRA magnitude under both %s and %s", m, hfSuffixMag, hfSuffixMagOld)
			}
			magnitudes[m] = tensors[key]
			return nil
		case strings.HasSuffix(rest, hfSuffixEmbA) || strings.HasSuffix(rest, hfSuffixEmbB):
			embeddings[key] = tensors[key]
			return nil
		case strings.Contains(rest, "lora_embedding_A") || strings.Contains(rest, "lora_embedding_B"):
			return formatErrorf("", key, "unexpected LoRA key: want <module>%s or <module>%s", hfSuffixEmbA, hfSuffixEmbB)
		case strings.Contains(rest, "lora_magnitude_vector"):
			return formatErrorf("", key, "unexpected DoRA key: want <module>%s", hfSuffixMag)
		case strings.Contains(rest, ".lora_A.") || strings.Contains(rest, ".lora_B."):
			return formatErrorf("", key, "unexpected LoRA key: want <module>%s or <module>%s", hfSuffixA, hfSuffixB)
		}
		a.Extra[rest] = tensors[key]
		return nil
	})
	if err != nil {
		return err
	}
	embKeys := loraKeys{prefix: hfModelPrefix, suffixA: hfSuffixEmbA, suffixB: hfSuffixEmbB, layoutA: "[r, vocab]", layoutB: "[dim, r]"}
	embPairs, err := embKeys.pair(embeddings, func(key, _ string) error {
		return formatErrorf("", key, "unexpected LoRA key") // every key given ends in an embedding suffix
	})
	if err != nil {
		return err
	}
	for m, p := range embPairs {
		if _, dup := pairs[m]; dup {
			return formatErrorf("", hfModelPrefix+m+hfSuffixEmbA, "module %q has both lora_A/lora_B and lora_embedding_A/lora_embedding_B", m)
		}
		pairs[m] = p
	}
	for _, m := range sortedKeys(pairs) {
		p := pairs[m]
		_, embedding := embPairs[m]
		keyA, keyB := hfModelPrefix+m+hfSuffixA, hfModelPrefix+m+hfSuffixB
		if embedding {
			keyA, keyB = hfModelPrefix+m+hfSuffixEmbA, hfModelPrefix+m+hfSuffixEmbB
		}
		r := int64(a.LoRA.RankFor(m))
		parts := int64(EnabledParts(a.LoRA.EnableFor(m)))
		if p.a.Shape[0] != r*parts {
			return formatErrorf("", keyA, "shape %v has rank %d, but the config's r is %d", p.a.Shape, p.a.Shape[0], r*parts)
		}
		if p.b.Shape[1] != r {
			return formatErrorf("", keyB, "shape %v has rank %d, but the config's r is %d", p.b.Shape, p.b.Shape[1], r)
		}
		if len(p.a.Shape) >= 3 {
			// A convolution's factors: graph layout is PEFT's.
			a.Weights[m] = LoRAWeights{A: p.a, B: p.b}
			continue
		}
		a.Weights[m] = LoRAWeights{A: p.a.Transpose(), B: p.b.Transpose(), Embedding: embedding}
	}
	if len(a.Weights) == 0 {
		return formatErrorf("", "", "no LoRA weights (no base_model.model.<module>%s keys)", hfSuffixA)
	}
	for _, m := range sortedKeys(magnitudes) {
		w, ok := a.Weights[m]
		if !ok {
			return formatErrorf("", hfModelPrefix+m+hfSuffixMag, "a DoRA magnitude for module %q, which has no lora_A and lora_B", m)
		}
		w.Magnitude = magnitudes[m]
		a.Weights[m] = w
	}
	return nil
}

// prefixFromHF fills a.Prompt, a.Projection and a.Extra from PEFT keys.
func (a *Adapter) prefixFromHF(tensors map[string]*Tensor) error {
	proj := map[string]*Tensor{}
	for _, key := range sortedKeys(tensors) {
		t := tensors[key]
		switch key {
		case hfPromptKey:
			a.Prompt = t
		case hfProjW1, hfB1, hfProjW2, hfB2:
			proj[key] = t
		default:
			rest, ok := strings.CutPrefix(key, hfModelPrefix)
			if !ok {
				return formatErrorf("", key, "unexpected key in a prefix adapter: want %s, prefix_encoder.transform.{0,2}.{weight,bias} or %s<name>", hfPromptKey, hfModelPrefix)
			}
			a.Extra[rest] = t
		}
	}
	if a.Prompt == nil {
		return formatErrorf("", hfPromptKey, "missing")
	}
	c := a.Prefix
	if len(proj) == 0 {
		if c.PrefixProjection && len(a.Prompt.Shape) == 2 && a.Prompt.Shape[1] == int64(c.TableWidth()) && c.TableWidth() != c.HiddenSize {
			c.PrefixProjection = false // PEFT saved the projected table
		}
		return nil
	}
	for _, k := range []string{hfProjW1, hfB1, hfProjW2, hfB2} {
		if proj[k] == nil {
			return formatErrorf("", k, "missing: the projection needs all four prefix_encoder.transform tensors")
		}
	}
	for _, k := range []string{hfProjW1, hfProjW2} {
		if len(proj[k].Shape) != 2 {
			return formatErrorf("", k, "shape %v, want 2-D [out, in]", proj[k].Shape)
		}
	}
	a.Projection = &PrefixProjection{W1: proj[hfProjW1].Transpose(), B1: proj[hfB1], W2: proj[hfProjW2].Transpose(), B2: proj[hfB2]}
	return nil
}

// hfLoRATensors returns the PEFT keys and layouts of module m's factors
// (see SaveDir).
func hfLoRATensors(m string, w LoRAWeights) (keyA, keyB string, a, b *Tensor) {
	switch {
	case w.Embedding:
		return hfModelPrefix + m + hfSuffixEmbA, hfModelPrefix + m + hfSuffixEmbB, w.A.Transpose(), w.B.Transpose()
	case w.Conv():
		return hfModelPrefix + m + hfSuffixA, hfModelPrefix + m + hfSuffixB, w.A, w.B
	}
	return hfModelPrefix + m + hfSuffixA, hfModelPrefix + m + hfSuffixB, w.A.Transpose(), w.B.Transpose()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
