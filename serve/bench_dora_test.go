package serve_test

import (
	"slices"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/serve"
)

// BenchmarkServeDoRA reports ms per token (1 client, greedy, 16 tokens a
// request, prefill included) on the plain engine, for the base and a LoRA
// adapter, and on the DoRA engine (Options.DoRA), for the base, the LoRA
// adapter and a DoRA adapter: what --dora costs. Both engines stack the
// same layers (q, k, v, o and down). Each op is one request of every case
// in turn, so that a change of load on a shared machine falls on all of
// them alike; each case reports the median over the ops, and
// x-dora-engine the DoRA engine's median over the plain engine's, for the
// base and for the LoRA adapter.
func BenchmarkServeDoRA(b *testing.B) {
	f := newFixture(b, benchConfig())
	f.newTokens = 16
	targets := []string{".*q_proj", ".*k_proj", ".*v_proj", ".*o_proj", ".*down_proj"}
	type bcase struct {
		label, adapter string
		e              *serve.Engine
		ms             []float64
	}
	var cases []*bcase
	for _, dora := range []bool{false, true} {
		e, err := serve.New(f.Base, serve.Options{MaxBatch: 8, MaxLoRAs: 8, Targets: targets, DoRA: dora})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		engine := "plain-engine/"
		if dora {
			engine = "dora-engine/"
		}
		if _, err := e.Load("lora", f.LoRA4, false); err != nil {
			b.Fatal(err)
		}
		cases = append(cases, &bcase{label: engine + "base", e: e}, &bcase{label: engine + "lora", adapter: "lora", e: e})
		if dora {
			if _, err := e.Load("dora", f.DoRA, false); err != nil {
				b.Fatal(err)
			}
			cases = append(cases, &bcase{label: engine + "dora", adapter: "dora", e: e})
		}
	}
	for _, c := range cases {
		if _, err := generate(b, c.e, c.adapter, f.prompts[0], 2); err != nil { // warm the session
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		for _, c := range cases {
			start := time.Now()
			if _, err := generate(b, c.e, c.adapter, f.prompts[0], f.newTokens); err != nil {
				b.Fatal(err)
			}
			c.ms = append(c.ms, 1000*time.Since(start).Seconds()/float64(f.newTokens))
		}
	}
	b.StopTimer()
	median := func(v []float64) float64 {
		s := slices.Sorted(slices.Values(v))
		return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
	}
	for _, c := range cases {
		b.ReportMetric(median(c.ms), "ms/token-"+c.label)
	}
	b.ReportMetric(median(cases[2].ms)/median(cases[0].ms), "x-dora-engine-base")
	b.ReportMetric(median(cases[3].ms)/median(cases[1].ms), "x-dora-engine-lora")
}
