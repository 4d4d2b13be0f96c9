package runtime_test

import (
	"context"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// The generation benchmarks run models.LlamaMini (124K parameters) on one
// thread: a 16-token prompt, then 64 new tokens greedily. They report
// generated tokens per second, prefill included.

const (
	benchPrompt = 16
	benchNew    = 64
)

func benchPromptIDs() []int64 {
	ids := make([]int64, benchPrompt)
	for i := range ids {
		ids[i] = int64(1 + i*7%255)
	}
	return ids
}

func llamaMini(b *testing.B) *rt.Session {
	m, err := models.Llama(models.LlamaMini())
	return modelSession(b, m, err)
}

func BenchmarkGenerateLlamaMini(b *testing.B) {
	g := newGenerator(b, llamaMini(b))
	prompt := benchPromptIDs()
	ctx := context.Background()
	b.ReportAllocs()
	tokens := 0
	for b.Loop() {
		out, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: benchNew})
		if err != nil {
			b.Fatal(err)
		}
		tokens += len(out)
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkGenerateLlamaMiniSampled adds temperature, top-k and top-p.
func BenchmarkGenerateLlamaMiniSampled(b *testing.B) {
	g := newGenerator(b, llamaMini(b))
	prompt := benchPromptIDs()
	ctx := context.Background()
	b.ReportAllocs()
	tokens := 0
	for b.Loop() {
		out, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: benchNew, Temperature: 0.8, TopK: 40, TopP: 0.9, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		tokens += len(out)
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkGenerateLlamaMiniUncached is the baseline without a KV cache:
// every token reruns the whole sequence with an empty past.
func BenchmarkGenerateLlamaMiniUncached(b *testing.B) {
	s := llamaMini(b)
	info := newGenerator(b, s).Info()
	prompt := benchPromptIDs()
	b.ReportAllocs()
	tokens := 0
	for b.Loop() {
		seq := slices.Clone(prompt)
		for range benchNew {
			l := int64(len(seq))
			ones, pos := make([]int64, l), make([]int64, l)
			for i := range ones {
				ones[i], pos[i] = 1, int64(i)
			}
			in := map[string]*rt.Tensor{
				"input_ids":      must(rt.NewInt64([]int64{1, l}, slices.Clone(seq))),
				"attention_mask": must(rt.NewInt64([]int64{1, l}, ones)),
				"position_ids":   must(rt.NewInt64([]int64{1, l}, pos)),
			}
			for _, name := range info.Past {
				in[name] = must(rt.Zeros(info.CacheDType, []int64{1, int64(info.KVHeads), 0, int64(info.HeadDim)}))
			}
			out, err := s.Run(in, []string{"logits"})
			if err != nil {
				b.Fatal(err)
			}
			row := out["logits"].Float32()[(l-1)*int64(info.Vocab):]
			best := 0
			for i, v := range row {
				if v > row[best] {
					best = i
				}
			}
			seq = append(seq, int64(best))
			tokens++
		}
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkGenerateTinyLlamaFP16 runs the real float16 export, vocabulary
// 32000, from ../shared/models.
func BenchmarkGenerateTinyLlamaFP16(b *testing.B) {
	requireORT(b)
	s, err := rt.NewSession(sharedModel(b, "tiny-llama-genai-fp16/model.onnx"), rt.WithIntraOpThreads(1))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := newGenerator(b, s)
	prompt := benchPromptIDs()
	ctx := context.Background()
	b.ReportAllocs()
	tokens := 0
	for b.Loop() {
		out, err := g.Generate(ctx, prompt, rt.GenerateOptions{MaxNewTokens: benchNew})
		if err != nil {
			b.Fatal(err)
		}
		tokens += len(out)
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
}
