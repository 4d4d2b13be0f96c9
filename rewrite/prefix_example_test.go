package rewrite_test

import (
	"fmt"
	"log"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
)

func ExampleInjectPrefix() {
	// A LLaMA-style decoder with 4 query heads over 2 KV heads.
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		log.Fatal(err)
	}
	site, sum, err := rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 8}, rewrite.PrefixSeed(1))
	if err != nil {
		log.Fatal(err)
	}
	c := site.Config
	fmt.Printf("layers %d, heads %d, kv heads %d, head dim %d\n", c.NumHiddenLayers, c.NumAttentionHeads, c.KVHeads(), c.HeadDim())
	fmt.Println(site.Prompt, m.Initializer(site.Prompt).Dims)
	fmt.Println("fed where the past goes:", site.Past)
	fmt.Println(sum)
	// Output:
	// layers 2, heads 4, kv heads 2, head dim 4
	// prompt_embeddings [8 32]
	// fed where the past goes: [past_key_values.0.key past_key_values.0.value past_key_values.1.key past_key_values.1.value]
	// trainable params: 256 || all params: 6,736 || trainable%: 3.8005
}

func ExampleApplyPrefix() {
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		log.Fatal(err)
	}
	base := m.Clone()
	if _, _, err := rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 4, PrefixProjection: true, PrefixProjectionHiddenSize: 8}); err != nil {
		log.Fatal(err)
	}
	// After training: take the adapter out (save it with adapter.SaveDir),
	// and later put it into a fresh copy of the base model.
	ad, err := rewrite.ExtractPrefix(m)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ad)
	_, sum, err := rewrite.ApplyPrefix(base, ad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum)
	// Output:
	// prefix P=4 layers=2 kv_heads=2 head_dim=4: 488 params
	// trainable params: 488 || all params: 6,968 || trainable%: 7.0034
}
