package runtime_test

import (
	"context"
	"fmt"
	"log"

	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// Generate greedily from a tiny LLaMA built in Go, streaming the tokens as
// they come. The model is untrained, so the tokens mean nothing, but they
// are the same on every run.
func ExampleGenerator_Generate() {
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		log.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		log.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	g, err := rt.NewGenerator(s)
	if err != nil {
		log.Fatal(err)
	}
	info := g.Info()
	fmt.Printf("cache: %s, %d layers of %d heads × %d, %s\n", info.Layout, info.Layers, info.KVHeads, info.HeadDim, info.CacheDType)

	ids, err := g.Generate(context.Background(), []int64{1, 5, 9}, rt.GenerateOptions{
		MaxNewTokens: 6,
		OnToken: func(t rt.Token) error {
			if t.Step > 0 {
				fmt.Print(" ")
			}
			fmt.Print(t.ID)
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println()
	fmt.Println(len(ids), "tokens")
	// Output:
	// cache: past_key_values.{i}.key/value, 2 layers of 2 heads × 4, float32
	// 21 7 30 31 14 24
	// 6 tokens
}
