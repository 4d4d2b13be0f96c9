package combine_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
)

// TestCombineLayerKinds checks that an embedding's factors stay marked as
// an embedding's in the combined adapter (so that SaveDir writes
// lora_embedding_A/B), and that a convolution's 4-D factors are refused
// with a message, not a crash.
func TestCombineLayerKinds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	emb := randomFactors(rng, 10, 2, 4)
	emb.Embedding = true
	a := lora(2, 4, false, map[string]adapter.LoRAWeights{"embed_tokens": emb, "q_proj": randomFactors(rng, 4, 2, 4)})
	b := lora(2, 4, false, map[string]adapter.LoRAWeights{"embed_tokens": emb, "q_proj": randomFactors(rng, 4, 2, 4)})
	out, err := combine.Adapters(inputs(a, b), combine.Options{Method: combine.Cat, Weights: []float64{0.5, 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Weights["embed_tokens"].Embedding || out.Weights["q_proj"].Embedding {
		t.Errorf("combined embedding marks: embed_tokens %v, q_proj %v", out.Weights["embed_tokens"].Embedding, out.Weights["q_proj"].Embedding)
	}
	uni, err := combine.UniformRank(a)
	if err != nil {
		t.Fatal(err)
	}
	if !uni.Weights["embed_tokens"].Embedding {
		t.Errorf("UniformRank dropped the embedding mark")
	}

	conv := adapter.LoRAWeights{
		A: adapter.NewTensor([]int64{2, 3, 3, 3}, make([]float32, 54)),
		B: adapter.NewTensor([]int64{4, 2, 1, 1}, make([]float32, 8)),
	}
	c := lora(2, 4, false, map[string]adapter.LoRAWeights{"conv": conv})
	_, err = combine.Adapters(inputs(c, c), combine.Options{Method: combine.Cat, Weights: []float64{0.5, 0.5}})
	if err == nil || !strings.Contains(err.Error(), "convolution") {
		t.Errorf("combining convolution factors: %v, want a refusal", err)
	}
	if _, err := combine.UniformRank(c); err == nil || !strings.Contains(err.Error(), "convolution") {
		t.Errorf("UniformRank of convolution factors: %v, want a refusal", err)
	}
}
