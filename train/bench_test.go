package train

import (
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// BenchmarkTrainStep times one optimizer step (forward, backward, clip,
// AdamW) of a LLaMA-style decoder of GPT-2 small's size (models.LlamaBase:
// hidden 768, 12 layers, vocabulary 50257, 180M weights) on a batch of 8
// sequences of 128 tokens:
//
//   - lora: LoRA r=8 on q_proj and v_proj, the rest frozen (0.3M trainable);
//   - full: every weight trainable, from the same autodiff.
//
// It reports tokens/s and the process's peak resident memory, which
// covers everything the process did: run each case in a process of its
// own to compare them, e.g.
//
//	go test -run '^$' -bench 'TrainStep/lora' -benchtime 3x ./train
//	go test -run '^$' -bench 'TrainStep/full' -benchtime 3x ./train
//
// PEFTONNX_BENCH_MODEL=mini runs the demo size (models.LlamaMini) instead,
// for a quick check of the benchmark itself.
func BenchmarkTrainStep(b *testing.B) {
	for _, full := range []bool{false, true} {
		name := "lora"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) { benchTrainStep(b, full) })
	}
}

func benchTrainStep(b *testing.B, full bool) {
	requireORT(b)
	const batch, seq = 8, 128
	c := models.LlamaBase()
	if os.Getenv("PEFTONNX_BENCH_MODEL") == "mini" {
		c = models.LlamaMini()
	}
	c.NoCache = true
	m, err := models.Llama(c)
	if err != nil {
		b.Fatal(err)
	}
	var params []string
	if full {
		for _, init := range m.Graph().Initializer {
			if graph.TypeOf(init).IsFloat() {
				params = append(params, init.Name)
			}
		}
	} else {
		lc := adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj")
		lc.R, lc.Alpha = 8, 16
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			b.Fatal(err)
		}
		params = sum.Trainable()
	}
	r := NewRNG(1)
	data := &Dataset{Path: "random"}
	for i := range batch {
		ids := make([]int64, seq)
		for j := range ids {
			ids[j] = int64(r.Intn(c.VocabSize))
		}
		data.Examples = append(data.Examples, Example{InputIDs: ids, Labels: ids, Line: i + 1})
	}
	opts := DefaultOptions()
	opts.Steps, opts.BatchSize, opts.SeqLen, opts.PadToSeqLen = 1<<20, batch, seq, true
	opts.LR, opts.Schedule = 1e-4, "constant"
	if n, err := strconv.Atoi(os.Getenv("PEFTONNX_BENCH_THREADS")); err == nil {
		opts.Session = []rt.Option{rt.WithIntraOpThreads(n)}
	}
	setup := time.Now()
	tr, err := NewTrainer(m, params, data, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	m = nil
	if _, err := tr.TrainStep(); err != nil { // warm up: first-run allocations
		b.Fatal(err)
	}
	b.Logf("%s: %d trainable tensors, setup and first step %v", b.Name(), len(params), time.Since(setup).Round(time.Millisecond))
	b.ResetTimer()
	start := time.Now()
	tokens := 0
	for b.Loop() {
		res, err := tr.TrainStep()
		if err != nil {
			b.Fatal(err)
		}
		tokens += res.InputTokens
	}
	b.ReportMetric(float64(tokens)/time.Since(start).Seconds(), "tokens/s")
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MB") // Maxrss is in KiB on Linux
	}
}
