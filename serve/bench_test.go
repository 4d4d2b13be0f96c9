package serve_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/serve"
	"github.com/peftonnx/peftonnx/session"
)

// benchConfig is LlamaMini, or with PEFTONNX_SERVE_BENCH=base LlamaBase
// (GPT-2 small's sizes), the size the goals are set at.
func benchConfig() models.LlamaConfig {
	if os.Getenv("PEFTONNX_SERVE_BENCH") == "base" {
		return models.LlamaBase()
	}
	return models.LlamaMini()
}

// BenchmarkServe reports aggregate tokens/s: the merged model on
// runtime's Generator (no engine), and through the engine the base and an
// unmerged LoRA with 1 client, and 8 concurrent clients all on the base or
// on 8 different adapters.
func BenchmarkServe(b *testing.B) {
	f := newFixture(b, benchConfig())
	f.newTokens = 16
	paths := []string{f.LoRA4, f.LoRA8}
	b.Run("merged-generator", func(b *testing.B) {
		m := f.Model(b)
		defer m.Close()
		if err := rewrite.MergeAdapter(m, f.Adapter(f.LoRA4)); err != nil {
			b.Fatal(err)
		}
		s, err := session.OpenModel(m)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		g, err := rt.NewGenerator(s.Session)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if _, err := g.Generate(context.Background(), f.prompts[0], rt.GenerateOptions{MaxNewTokens: f.newTokens}); err != nil {
				b.Fatal(err)
			}
		}
		elapsed := time.Since(start).Seconds()
		b.ReportMetric(float64(b.N*f.newTokens)/elapsed, "tokens/s")
		b.ReportMetric(1000*elapsed/float64(b.N*f.newTokens), "ms/token")
	})
	// The adapters' layers only: every stacked layer costs a few nodes per
	// step (Options.Targets).
	targets := []string{".*q_proj", ".*k_proj", ".*v_proj", ".*o_proj", ".*down_proj"}
	if os.Getenv("PEFTONNX_SERVE_BENCH_ALL") != "" {
		targets = nil
	}
	e, err := serve.New(f.Base, serve.Options{MaxBatch: 8, MaxLoRAs: 8, Targets: targets})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	var names []string
	for i := range 8 {
		name := fmt.Sprintf("ad%d", i)
		if _, err := e.Load(name, paths[i%2], false); err != nil {
			b.Fatal(err)
		}
		names = append(names, name)
	}
	for _, c := range []struct {
		name     string
		clients  int
		adapters []string
	}{
		{"base-1", 1, []string{""}},
		{"lora-1", 1, names[:1]},
		{"base-8", 8, []string{""}},
		{"8adapters-8", 8, names},
	} {
		b.Run(c.name, func(b *testing.B) {
			start := time.Now()
			var wg sync.WaitGroup
			for k := range c.clients {
				wg.Go(func() {
					for i := range b.N {
						if _, err := generate(b, e, c.adapters[(k+i)%len(c.adapters)], f.prompts[0], f.newTokens); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start).Seconds()
			b.ReportMetric(float64(c.clients*b.N*f.newTokens)/elapsed, "tokens/s")
			// Each client waits this long per token (prefill included).
			b.ReportMetric(1000*elapsed/float64(b.N*f.newTokens), "ms/token")
		})
	}
}
