package adapter

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// File names of PaddleNLP adapter directories (paddlenlp/utils/env.py).
const (
	PaddleLoRAWeightsFile   = "lora_model_state.pdparams"   // LoRAModel.save_pretrained's state dict
	PaddlePrefixWeightsFile = "prefix_model_state.pdparams" // PrefixModelForCausalLM.save_pretrained's state dict
	PaddlePreCachesFile     = "pre_caches.npy"              // the prefix as past key values, [layers, 2, kv_heads, P, head_dim]
)

// Key names in PaddleNLP's state dicts: "<module>.lora_A" and
// "<module>.lora_B" for LoRA (the parameters of LoRALinear, no ".weight"),
// and the prefix encoder's nn.Sequential by index: 0 the nn.Embedding, 1
// and 3 the nn.Linear layers of the projection.
const (
	paddleSuffixA    = ".lora_A"
	paddleSuffixB    = ".lora_B"
	paddlePrefixKey  = "0.weight"
	paddleProjW1     = "1.weight"
	paddleProjB1     = "1.bias"
	paddleProjW2     = "3.weight"
	paddleProjB2     = "3.bias"
	paddleMergeFirst = "merge the shards into one adapter first (PaddleNLP: save_pretrained(merge_tensor_parallel=True))"
)

// SavePaddleDir writes a as PaddleNLP's save_pretrained does, so that
// LoRAModel.from_pretrained or PrefixModelForCausalLM.from_pretrained
// loads it: lora_config.json and lora_model_state.pdparams, or
// prefix_config.json, prefix_model_state.pdparams and pre_caches.npy. All
// files are written in full before any is renamed into place (see
// writeFilesAtomic); dir is created if needed. A directory that holds an
// adapter_config.json is refused, since LoadDir would read that first.
//
// LoRA factors keep graph layout, which is PaddleNLP's: "<module>.lora_A"
// [in, r] and "<module>.lora_B" [r, out]. Extra tensors keep their names;
// 1-D ones (biases) and those of 3 or more dimensions are stored as they
// are, and the weight of a LoRA module ("<module>.weight", nn.Linear's
// [out, in]) as paddle's [in, out]. Other 2-D tensors are refused: paddle
// stores a Linear's weight transposed and an Embedding's not, and the
// adapter cannot tell which one a tensor belongs to.
//
// A prefix adapter stores its table as the prefix encoder's embedding
// "0.weight" [P, layers·2·kv_heads·head_dim], with PaddleNLP's column
// order: all keys, layer after layer, then all values, where peftonnx's
// table has each layer's key and value side by side (see PrefixConfig).
// With a projection, "0.weight" is the encoder's input [P, hidden] and
// "1.weight" [hidden, projection_hidden], "1.bias", "3.weight"
// [projection_hidden, table width] and "3.bias" its linear layers, the
// last two in the same column order; PaddleNLP sizes the input by the
// key/value heads, so a projection with grouped-query heads is refused.
// pre_caches.npy holds the computed table as PaddleNLP's past key values,
// [layers, 2, kv_heads, P, head_dim].
//
// The adapter is written whole: a config's tensor_parallel_degree over 1
// is written as -1, as PaddleNLP's merge_tensor_parallel save does.
// Config fields PaddleNLP has no key for go in a nested "peftonnx" object;
// rank_pattern, alpha_pattern, layers_to_transform and layers_pattern
// have no PaddleNLP meaning and are refused.
//
// PaddleNLP's target_modules are regexes only: AllLinear, which it does
// not know, is written as the adapter's modules, each a quoted regex.
func SavePaddleDir(dir string, a *Adapter) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if a.LoRA != nil && a.LoRA.UseDoRA {
		return errorf("PaddleNLP has no DoRA: a DoRA adapter (use_dora) has no PaddleNLP layout; save it as an HF PEFT directory")
	}
	if fileExists(filepath.Join(dir, HFConfigFile)) {
		return errorf("%s holds %s, which LoadDir reads before PaddleNLP's files: save the PaddleNLP layout into another directory", dir, HFConfigFile)
	}
	files := map[string][]byte{}
	var weights, configFile string
	var makeConfig func(weightsHash string) ([]byte, error)
	tensors := tensorSet{}
	add := tensors.add
	if a.LoRA != nil {
		weights = PaddleLoRAWeightsFile
		for _, m := range a.Modules() {
			w := a.Weights[m]
			if w.Embedding || w.Conv() {
				return formatErrorf("", m, "peftonnx writes PaddleNLP's LoRA layout for linear layers only, and this module is an embedding or a convolution; use the HuggingFace layout (SaveDir)")
			}
			if err := firstErr(add(m+paddleSuffixA, w.A), add(m+paddleSuffixB, w.B)); err != nil {
				return err
			}
		}
		for _, name := range sortedKeys(a.Extra) {
			t, err := paddleExtra(a, name, a.Extra[name])
			if err == nil {
				err = add(name, t)
			}
			if err != nil {
				return err
			}
		}
		c := paddleTargets(a)
		configFile, makeConfig = PaddleLoRAConfigFile, func(hash string) ([]byte, error) {
			return paddleLoRAConfigJSON(c, paddleTPDegree(c.TensorParallelDegree), hash)
		}
	} else {
		weights = PaddlePrefixWeightsFile
		c := a.Prefix
		if len(a.Extra) != 0 {
			return formatErrorf("", sortedKeys(a.Extra)[0], "PaddleNLP's prefix state dict holds the prefix encoder only: no extra tensors")
		}
		cols := paddlePrefixColumns(c)
		if p := a.Projection; p != nil {
			if c.KVHeads()*c.HeadDim() != c.HiddenSize {
				return paddleProjectionGQA(c)
			}
			err := firstErr(add(paddlePrefixKey, a.Prompt), add(paddleProjW1, p.W1), add(paddleProjB1, p.B1),
				add(paddleProjW2, permuteColumns(p.W2, cols, false)), add(paddleProjB2, permuteColumns(p.B2, cols, false)))
			if err != nil {
				return err
			}
		} else if err := add(paddlePrefixKey, permuteColumns(a.Prompt, cols, false)); err != nil {
			return err
		}
		configFile, makeConfig = PaddlePrefixConfigFile, func(hash string) ([]byte, error) { return paddlePrefixConfigJSON(c, hash) }
		caches, err := preCaches(a)
		if err != nil {
			return inFile(err, filepath.Join(dir, PaddlePreCachesFile))
		}
		files[PaddlePreCachesFile] = caches
	}
	b, err := EncodePdparams(tensors)
	if err != nil {
		return inFile(err, filepath.Join(dir, weights))
	}
	files[weights] = b
	config, err := makeConfig(weightsHash(b))
	if err != nil {
		return err
	}
	files[configFile] = config
	return writeFilesAtomic(dir, files)
}

// paddleExtra converts an extra tensor between the adapter (nn.Linear
// weights [out, in]) and PaddleNLP's state dict ([in, out]), either way;
// see SavePaddleDir.
func paddleExtra(a *Adapter, name string, t *Tensor) (*Tensor, error) {
	if len(t.Shape) != 2 {
		return t, nil
	}
	module, isWeight := strings.CutSuffix(name, ".weight")
	if _, lora := a.Weights[module]; isWeight && lora {
		if a.LoRA.FanInFanOut {
			return t, nil // already [in, out]
		}
		return t.Transpose(), nil
	}
	return nil, formatErrorf("", name, "a 2-D trainable tensor of a module without LoRA: paddle stores nn.Linear weights [in, out] and nn.Embedding weights [num, dim], and the adapter cannot tell which this is; use the HuggingFace layout (SaveDir)")
}

func paddleProjectionGQA(c *PrefixConfig) error {
	return formatErrorf("", paddlePrefixKey, "PaddleNLP's prefix projection takes kv_heads·head_dim = %d inputs, peftonnx's takes hidden_size %d: a projection with grouped-query heads has no PaddleNLP layout", c.KVHeads()*c.HeadDim(), c.HiddenSize)
}

// paddleTPDegree is the tensor_parallel_degree a whole adapter is written
// with: -1 for any degree over 1, since the shards are merged.
func paddleTPDegree(d int) int {
	if d > 1 {
		return -1
	}
	return d
}

// paddleTargets returns a's LoRA config with AllLinear among the targets
// replaced by the adapter's own modules, quoted.
func paddleTargets(a *Adapter) *LoRAConfig {
	c := *a.LoRA
	i := slices.Index(c.TargetModules, AllLinear)
	if i < 0 {
		return &c
	}
	targets := slices.Delete(slices.Clone(c.TargetModules), i, i+1)
	for _, m := range a.Modules() {
		targets = append(targets, regexp.QuoteMeta(m))
	}
	c.TargetModules = targets
	return &c
}
