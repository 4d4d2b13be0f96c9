package adapter

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// This file reads PaddleNLP directories for LoadDir.

// paddleShardPattern matches the names PaddleNLP gives the shards of a
// weights file: "<stem>.tp00.pdparams", with _pp00 under pipeline
// parallelism (weight_name_suffix, _add_variant).
func paddleShardPattern(weights string) *regexp.Regexp {
	stem := strings.TrimSuffix(weights, ".pdparams")
	return regexp.MustCompile(`^` + regexp.QuoteMeta(stem) + `\.(tp\d+(?:_pp\d+)?|pp\d+)\.pdparams$`)
}

// paddleWeightsPath finds the weights file of a PaddleNLP directory: the
// whole adapter, or a single "tp00" shard at degree 1. It returns "" when
// there are no weights. Shards of a tensor-parallel adapter are an error
// that says to merge them, as PaddleNLP's from_pretrained says at another
// degree.
func paddleWeightsPath(dir, weights string, degree int) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", errorf("%w", err)
	}
	re := paddleShardPattern(weights)
	var shards []string
	for _, e := range entries {
		if re.MatchString(e.Name()) {
			shards = append(shards, e.Name())
		}
	}
	sort.Strings(shards)
	whole := filepath.Join(dir, weights)
	_, err = os.Stat(whole)
	haveWhole := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", errorf("%w", err)
	}
	switch {
	case degree > 1:
		found := "none of them is here"
		if len(shards) > 0 {
			found = "found " + strings.Join(shards, ", ")
		}
		return "", errorf("%s: tensor_parallel_degree %d: the adapter is saved as %d tensor-parallel shards (%s); %s", dir, degree, degree, found, paddleMergeFirst)
	case haveWhole:
		return whole, nil
	case len(shards) == 1 && strings.HasSuffix(shards[0], ".tp00.pdparams"):
		return filepath.Join(dir, shards[0]), nil // degree 1: the only shard is the whole adapter
	case len(shards) > 0:
		return "", errorf("%s: no %s but %d shards (%s); %s", dir, weights, len(shards), strings.Join(shards, ", "), paddleMergeFirst)
	}
	return "", nil
}

// loadPaddleWeights fills a, whose config came from a PaddleNLP directory,
// from that directory's weights. Without weights a holds its config only,
// unless pre_caches.npy gives a prefix table.
func (a *Adapter) loadPaddleWeights(dir string) error {
	weights, degree := PaddleLoRAWeightsFile, 0
	if a.LoRA != nil {
		degree = a.LoRA.TensorParallelDegree
	} else {
		weights, degree = PaddlePrefixWeightsFile, a.Prefix.TensorParallelDegree
	}
	path, err := paddleWeightsPath(dir, weights, degree)
	if err != nil {
		return err
	}
	caches := filepath.Join(dir, PaddlePreCachesFile)
	if path == "" {
		if a.Prefix != nil && fileExists(caches) {
			return a.prefixFromPreCaches(caches)
		}
		return nil
	}
	configFile := PaddleLoRAConfigFile
	if a.Prefix != nil {
		configFile = PaddlePrefixConfigFile
	}
	if err := checkWeightsHash(filepath.Join(dir, configFile), path); err != nil {
		return err
	}
	tensors, err := ReadPdparams(path)
	if err != nil {
		return err
	}
	if err := a.fill(tensors, path, a.loraFromPaddle, a.prefixFromPaddle); err != nil {
		return err
	}
	if a.Prefix != nil && fileExists(caches) {
		return a.checkPreCaches(caches)
	}
	return nil
}

// loraFromPaddle fills a.Weights and a.Extra from PaddleNLP's keys; the
// factors are in graph layout already.
func (a *Adapter) loraFromPaddle(tensors map[string]*Tensor) error {
	keys := loraKeys{suffixA: paddleSuffixA, suffixB: paddleSuffixB, layoutA: "[in, r]", layoutB: "[r, out]"}
	var extra []string
	pairs, err := keys.pair(tensors, func(key, _ string) error {
		switch {
		case strings.Contains(key, ".lora_A.") || strings.Contains(key, ".lora_B."):
			return formatErrorf("", key, "LoRA on a layer other than Linear (LoRAConv2D, LoRAEmbedding) is not supported")
		case strings.Contains(key, "_quanter."):
			return formatErrorf("", key, "quantization-aware training scales (do_qat) are not supported")
		}
		extra = append(extra, key)
		return nil
	})
	if err != nil {
		return err
	}
	for m, p := range pairs {
		a.Weights[m] = LoRAWeights{A: p.a, B: p.b}
	}
	if len(a.Weights) == 0 {
		return formatErrorf("", "", "no LoRA weights (no <module>%s keys)", paddleSuffixA)
	}
	for _, key := range extra {
		t, err := paddleExtra(a, key, tensors[key])
		if err != nil {
			return err
		}
		a.Extra[key] = t
	}
	return nil
}

// prefixFromPaddle fills a.Prompt and a.Projection from the prefix
// encoder's state dict.
func (a *Adapter) prefixFromPaddle(tensors map[string]*Tensor) error {
	c := a.Prefix
	want := []string{paddlePrefixKey}
	if c.PrefixProjection {
		want = append(want, paddleProjW1, paddleProjB1, paddleProjW2, paddleProjB2)
	}
	for _, k := range sortedKeys(tensors) {
		if !slices.Contains(want, k) {
			return formatErrorf("", k, "unexpected key in a prefix state dict: want %s", strings.Join(want, ", "))
		}
	}
	for _, k := range want {
		if tensors[k] == nil {
			return formatErrorf("", k, "missing")
		}
	}
	cols := paddlePrefixColumns(c)
	table := tensors[paddlePrefixKey]
	if !c.PrefixProjection {
		if len(table.Shape) != 2 || table.Shape[1] != int64(len(cols)) {
			return formatErrorf("", paddlePrefixKey, "shape %v, want [num_prefix_tokens, %d]", table.Shape, len(cols))
		}
		a.Prompt = permuteColumns(table, cols, true)
		return nil
	}
	if c.KVHeads()*c.HeadDim() != c.HiddenSize {
		return paddleProjectionGQA(c)
	}
	w2, b2 := tensors[paddleProjW2], tensors[paddleProjB2]
	if w := int64(len(cols)); len(w2.Shape) != 2 || w2.Shape[1] != w || len(b2.Shape) != 1 || b2.Shape[0] != w {
		return formatErrorf("", paddleProjW2, "shapes %v and %v (3.bias), want [projection_hidden, %d] and [%d]", w2.Shape, b2.Shape, w, w)
	}
	a.Prompt = table
	a.Projection = &PrefixProjection{W1: tensors[paddleProjW1], B1: tensors[paddleProjB1], W2: permuteColumns(w2, cols, true), B2: permuteColumns(b2, cols, true)}
	return nil
}
