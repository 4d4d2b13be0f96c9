package rewrite

import (
	"hash/fnv"
	"math/rand/v2"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// An embedding layer is a Gather on axis 0 of a 2-D floating-point table
// [vocab, dim], nn.Embedding as exporters write it. Its LoRA branch, as HF
// PEFT's lora.Embedding computes it, is
//
//	y = W[ids] + A[ids]·B·s
//
// with A [vocab, r] gathered by the same ids and B [r, dim]: the branch of
// a linear layer whose input is the one-hot ids, so that Site, merge
// (W' = W + s·A·B) and graph layout are a linear layer's. HF PEFT stores
// the factors transposed, as lora_embedding_A [r, vocab] and
// lora_embedding_B [dim, r] (package adapter). A fresh A is zero and B
// normal(0, 1), PEFT's initialisation for embeddings; PEFT applies no
// dropout to an embedding's branch, and neither does this one.

// embeddingOf reports whether n is an embedding and describes it.
func embeddingOf(m *graph.Model, n *onnxpb.NodeProto) (Linear, bool) {
	if (n.Domain != "" && n.Domain != "ai.onnx") || n.OpType != "Gather" || len(n.Input) != 2 || len(n.Output) != 1 {
		return Linear{}, false
	}
	if graph.IntAttr(n, "axis", 0) != 0 || n.Input[1] == "" || m.Initializer(n.Input[1]) != nil {
		return Linear{}, false
	}
	path, ok := weightChain(m, n.Input[0])
	if !ok || path.transposes != 0 {
		return Linear{}, false
	}
	l := path.linear(n, n.Input[1])
	l.Kind = KindEmbedding
	l.In, l.Out = path.w.Dims[0], path.w.Dims[1]
	return l, true
}

// initEmbedding returns fresh factors of an embedding's branch: A [in,
// cols] zero and B of n values normal(0, 1), from a stream that depends
// only on seed and the module name.
func initEmbedding(seed uint64, module string, in, cols, n int64) (a, b []float32) {
	h := fnv.New64a()
	h.Write([]byte(module))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	b = make([]float32, n)
	for i := range b {
		b[i] = float32(rng.NormFloat64())
	}
	return make([]float32, in*cols), b
}
