package rewrite

import (
	"maps"
	"slices"
	"strings"
)

// This file cleans module names that TensorFlow and Keras exports give,
// and reads names from weights that carry no ".weight" segment.

// opScopes are the trailing segments that TF exporters add below a
// layer's scope: the op that a Dense layer became.
var opScopes = map[string]bool{
	"MatMul": true, "Tensordot": true, "BiasAdd": true, "Gemm": true, "einsum": true, "Einsum": true,
	"ReadVariableOp": true, "read": true, "Read": true,
}

// wrapperScopes are the leading segments that tf2onnx puts in front of a
// Keras model's own names.
var wrapperScopes = map[string]bool{"StatefulPartitionedCall": true, "PartitionedCall": true}

// cleanSegments turns the scope path of a TF or Keras export into module
// segments as PyTorch spells them: the function-call wrappers in front go,
// op scopes at the end go ("query/Tensordot" is the module query), and
// Hugging Face's TF list elements "layer_._3" become "layer", "3". Other
// paths come back as they are.
func cleanSegments(segs []string) []string {
	for len(segs) > 1 && wrapperScopes[segs[0]] {
		segs = segs[1:]
	}
	for len(segs) > 1 && opScopes[segs[len(segs)-1]] {
		segs = segs[:len(segs)-1]
	}
	var out []string
	for _, s := range segs {
		if list, idx, ok := strings.Cut(s, "_._"); ok && list != "" && idx != "" && strings.Trim(idx, "0123456789") == "" {
			out = append(out, list, idx)
			continue
		}
		out = append(out, s)
	}
	return out
}

// kernelNames are the last segments by which weights that have no
// ".weight" segment say that they are a layer's matrix (TF's kernel, JAX's
// w), and biasNames those of its bias.
var (
	kernelNames = map[string]bool{"kernel": true, "weights": true, "weight": true, "w": true, "W": true}
	biasNames   = map[string]bool{"bias": true, "b": true}
)

// pathParamModule returns the module of a parameter whose name is a TF
// path ("bert/encoder/layer_0/attention/self/query/kernel:0" gives
// bert.encoder.layer_0.attention.self.query), a dotted name ending in one
// of ends ("l0.q.w" gives l0.q) or one name with an ends suffix
// ("lm_head_weight" gives lm_head), and "" for other names.
func pathParamModule(name string, ends map[string]bool) string {
	if name == "" || strings.ContainsAny(name, " ") {
		return ""
	}
	if i := strings.LastIndexByte(name, ':'); i > 0 && strings.Trim(name[i+1:], "0123456789") == "" {
		name = name[:i]
	}
	sep := "."
	if strings.Contains(name, "/") {
		sep = "/"
	}
	segs := strings.Split(strings.Trim(name, sep), sep)
	dropped := false
	for len(segs) > 1 && opScopes[segs[len(segs)-1]] {
		segs, dropped = segs[:len(segs)-1], true
	}
	last := segs[len(segs)-1]
	switch {
	case len(segs) > 1 && ends[last]:
		segs = segs[:len(segs)-1]
	case len(segs) == 1:
		for _, end := range slices.Sorted(maps.Keys(ends)) {
			if m, ok := strings.CutSuffix(last, "_"+end); ok && m != "" {
				return m
			}
		}
		return ""
	case sep == "/" && dropped:
		// A TF path whose variable has another name (ReadVariableOp
		// dropped above): the scope still names the layer.
	default:
		return ""
	}
	segs = cleanSegments(segs)
	for _, s := range segs {
		if s == "" || strings.ContainsAny(s, ".:") {
			return ""
		}
	}
	return strings.Join(segs, ".")
}
