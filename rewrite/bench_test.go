package rewrite

import (
	"fmt"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// BenchmarkInjectMerge injects rank-8 LoRA into every linear layer of the
// 125M-parameter LLaMA (500 MB of float32), then merges it back. Copying
// the model between iterations is not timed.
func BenchmarkInjectMerge(b *testing.B) {
	base, err := models.Llama(models.Llama500MB())
	if err != nil {
		b.Fatal(err)
	}
	cfg := config(8, 16, ".*")
	for _, step := range []string{"inject", "merge"} {
		b.Run(step, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				m := base.Clone()
				if step == "merge" {
					if _, _, err := InjectLoRA(m, cfg); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if step == "inject" {
					if _, _, err := InjectLoRA(m, cfg); err != nil {
						b.Fatal(err)
					}
				} else if err := Merge(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLatency runs GPT-2 small's sizes (no KV cache, sequence 128) as
// the base model, with rank-8 LoRA on every linear layer of the blocks, and
// merged, on one CPU thread.
func BenchmarkLatency(b *testing.B) {
	c := models.GPT2Base()
	c.NoCache = true
	base, err := models.GPT2(c)
	if err != nil {
		b.Fatal(err)
	}
	adapted := base.Clone()
	sites, _, err := InjectLoRA(adapted, config(8, 16, `transformer\.h\..*`))
	if err != nil {
		b.Fatal(err)
	}
	randomizeB(b, adapted, sites, 1, 0.02)
	merged := adapted.Clone()
	if err := Merge(merged); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		m    *graph.Model
	}{{"base", base}, {"adapted", adapted}, {"merged", merged}} {
		for _, batch := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/batch=%d", v.name, batch), func(b *testing.B) {
				s := session(b, v.m)
				feeds := feedsFor(b, s, batch, 128, 0, 1)
				run(b, s, feeds) // warm up
				b.ResetTimer()
				for b.Loop() {
					if _, err := s.Run(feeds, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDoRALatency measures what DoRA costs unmerged: GPT-2 small's
// sizes (no KV cache, sequence 128, batch 1, one CPU thread) with rank-8
// LoRA and rank-8 DoRA on every linear layer of the blocks, and the DoRA
// model merged (which runs as the base does). Unmerged DoRA computes
// ‖W + s·A·B‖ per layer and run, an in×out pass over each weight.
func BenchmarkDoRALatency(b *testing.B) {
	c := models.GPT2Base()
	c.NoCache = true
	base, err := models.GPT2(c)
	if err != nil {
		b.Fatal(err)
	}
	variant := func(dora bool) *graph.Model {
		m := base.Clone()
		cfg := config(8, 16, `transformer\.h\..*`)
		cfg.UseDoRA = dora
		sites, _, err := InjectLoRA(m, cfg)
		if err != nil {
			b.Fatal(err)
		}
		randomizeB(b, m, sites, 1, 0.02)
		return m
	}
	lora, dora := variant(false), variant(true)
	merged := dora.Clone()
	if err := Merge(merged); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		m    *graph.Model
	}{{"lora", lora}, {"dora", dora}, {"dora-merged", merged}} {
		b.Run(v.name, func(b *testing.B) {
			s := session(b, v.m)
			feeds := feedsFor(b, s, 1, 128, 0, 1)
			run(b, s, feeds) // warm up
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Run(feeds, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
