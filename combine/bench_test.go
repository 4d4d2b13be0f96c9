package combine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
)

// BenchmarkAdapters combines two r-16 adapters on every linear layer of a
// GPT-2-small-sized LLaMA (12 layers, hidden 768, MLP 3072: 84 modules).
func BenchmarkAdapters(b *testing.B) {
	rng := rand.New(rand.NewPCG(14, 14))
	make2 := func() *adapter.Adapter {
		w := map[string]adapter.LoRAWeights{}
		for l := 0; l < 12; l++ {
			for _, p := range []struct {
				name    string
				in, out int
			}{{"self_attn.q_proj", 768, 768}, {"self_attn.k_proj", 768, 256}, {"self_attn.v_proj", 768, 256}, {"self_attn.o_proj", 768, 768},
				{"mlp.gate_proj", 768, 3072}, {"mlp.up_proj", 768, 3072}, {"mlp.down_proj", 3072, 768}} {
				w[fmt.Sprintf("model.layers.%d.%s", l, p.name)] = randomFactors(rng, p.in, 16, p.out)
			}
		}
		return lora(16, 32, false, w)
	}
	in := inputs(make2(), make2())
	for _, o := range []combine.Options{
		{Method: combine.Cat},
		{Method: combine.Linear},
		{Method: combine.SVD, Rank: 16},
		{Method: combine.TIES, Density: 0.5},
		{Method: combine.DARETIES, Density: 0.5},
	} {
		b.Run(string(o.Method), func(b *testing.B) {
			for b.Loop() {
				if _, err := combine.Adapters(in, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
