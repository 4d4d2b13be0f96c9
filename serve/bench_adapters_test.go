package serve_test

import (
	"context"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/internal/procmem"
	"github.com/peftonnx/peftonnx/serve"
)

// BenchmarkServeAdapters reports the time from a Load request to the
// first token of the new adapter (per op), and the server's resident
// memory with 1 and with 100 adapters loaded (each a copy of the rank-4
// adapter under its own name), with the adapters' own bytes as the
// engine counts them.
func BenchmarkServeAdapters(b *testing.B) {
	f := newFixture(b, benchConfig())
	e, err := serve.New(f.Base, serve.Options{MaxCPULoRAs: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if _, err := generate(b, e, "", f.prompts[0], 2); err != nil { // warm the session
		b.Fatal(err)
	}
	loaded := 0
	load := func() {
		name := fmt.Sprintf("ad%d", loaded)
		loaded++
		if _, err := e.Load(name, f.LoRA4, false); err != nil {
			b.Fatal(err)
		}
	}
	rss := func() float64 {
		debug.FreeOSMemory() // the fixture's models are garbage by now
		v, _ := procmem.Field("VmRSS")
		return float64(v) / (1 << 20)
	}
	adapterMB := func() float64 {
		var n int64
		for _, a := range e.Adapters() {
			n += a.Bytes
		}
		return float64(n) / (1 << 20)
	}
	before := rss()
	load()
	one, oneAd := rss(), adapterMB()
	for loaded < 100 {
		load()
	}
	hundred, hundredAd := rss(), adapterMB()

	b.ResetTimer()
	var total time.Duration
	for range b.N {
		name := fmt.Sprintf("ad%d", loaded)
		start := time.Now()
		load()
		var first time.Duration
		_, err := e.Generate(context.Background(), serve.Request{Adapter: name, Prompt: f.prompts[0], MaxTokens: 1}, func(ev serve.Event) error {
			if first == 0 {
				first = time.Since(start)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		total += first
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-load-to-first-token")
	// After the loop: ResetTimer drops metrics reported before it.
	b.ReportMetric(before, "MB-rss-0")
	b.ReportMetric(one, "MB-rss-1")
	b.ReportMetric(hundred, "MB-rss-100")
	b.ReportMetric(oneAd, "MB-adapter-1")
	b.ReportMetric(hundredAd, "MB-adapters-100")

}
