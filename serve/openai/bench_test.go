package openai

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/serve"
)

// BenchmarkCompletionsHTTP measures generated tokens per second through
// the HTTP layer on the real engine: one client on the base, and 8
// clients at once, on the base and on the three adapters in turn,
// streaming and not.
func BenchmarkCompletionsHTTP(b *testing.B) {
	rs := newRealSetup(b, Options{})
	const n = 32
	prompt, _ := rs.tok.Encode(realPrompts[0], true)
	b.Run("1-client-base-engine-direct", func(b *testing.B) { // the engine alone, for the HTTP layer's cost
		var tokens int
		start := time.Now()
		for range b.N {
			u, err := rs.eng.Generate(context.Background(), serve.Request{Prompt: prompt, MaxTokens: n}, func(serve.Event) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			tokens += u.CompletionTokens
		}
		elapsed := time.Since(start).Seconds()
		b.ReportMetric(float64(tokens)/elapsed, "tokens/s")
		b.ReportMetric(elapsed*1000/float64(b.N), "ms/round")
	})
	for _, bc := range []struct {
		name    string
		clients int
		models  []string
		stream  bool
	}{
		{"1-client-base", 1, []string{"base"}, false},
		{"1-client-base-stream", 1, []string{"base"}, true},
		{"8-clients-base", 8, []string{"base"}, false},
		{"8-clients-mixed", 8, []string{"base", "a", "b", "p"}, false},
		{"8-clients-mixed-stream", 8, []string{"base", "a", "b", "p"}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var tokens int64
			var mu sync.Mutex
			start := time.Now()
			for range b.N {
				var wg sync.WaitGroup
				for c := range bc.clients {
					wg.Go(func() {
						body := map[string]any{"model": bc.models[c%len(bc.models)], "prompt": realPrompts[c%len(realPrompts)],
							"max_tokens": n, "temperature": 0, "stream": bc.stream, "stream_options": map[string]any{"include_usage": true}}
						if !bc.stream {
							delete(body, "stream_options")
						}
						code, out := post(b, rs.url+"/v1/completions", body)
						if code != http.StatusOK {
							b.Errorf("%d %s", code, out)
							return
						}
						var u *usageJSON
						if bc.stream {
							_, _, u = streamText(b, out, false)
						} else {
							u = decode[completionResponse](b, out).Usage
						}
						mu.Lock()
						tokens += int64(u.CompletionTokens)
						mu.Unlock()
					})
				}
				wg.Wait()
			}
			elapsed := time.Since(start).Seconds()
			b.ReportMetric(float64(tokens)/elapsed, "tokens/s")
			b.ReportMetric(elapsed*1000/float64(b.N), "ms/round")
		})
	}
}
