package demo

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
)

// Config sizes the demo. The zero value is not useful: start from Default.
type Config struct {
	Model   models.LlamaConfig
	Targets []string // LoRA target regexes
	R       int
	Alpha   float64
	Steps   int
	Batch   int
	SeqLen  int
	LR      float64
	Period  int64 // the synthetic task uses tokens 0..Period-1
	Seed    uint64
	Session []rt.Option
	// OutDir, when set, receives the base, adapted and merged models and
	// the trained adapter in HF PEFT layout.
	OutDir string
}

// Default is the embedded default: a 2-layer LLaMA with hidden size 64,
// LoRA r=8 on every linear layer and the LM head, trained for 120 steps.
func Default() Config {
	return Config{
		Model:   models.LlamaMini(),
		Targets: []string{`.*\.(q|k|v|o)_proj`, `.*\.(gate|up|down)_proj`, `lm_head`},
		R:       8,
		Alpha:   16,
		Steps:   120,
		Batch:   16,
		SeqLen:  24,
		LR:      1e-2,
		Period:  64,
		Seed:    7,
	}
}

// Report is what the demo did and measured.
type Report struct {
	Summary          rewrite.Summary
	Sites            int
	LossBefore       float64 // eval loss of the freshly injected model (= base)
	LossAfter        float64 // eval loss after training
	AccuracyBefore   float64 // greedy next-token accuracy of the base model
	AccuracyAfter    float64 // the same for the merged model
	MergedMaxDiff    float64 // largest |merged − adapted| logit
	BaseNodes        int
	MergedNodes      int
	FrozenUnchanged  int // frozen initializers checked bit for bit
	TrainTime, Total time.Duration
	TokensPerSecond  float64
}

// Run runs the demo and writes its progress and report to w.
func Run(ctx context.Context, w io.Writer, c Config) (*Report, error) {
	start := time.Now()
	r := &Report{}
	say := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }

	base, err := models.Llama(c.Model)
	if err != nil {
		return nil, err
	}
	r.BaseNodes = len(base.Graph().Node)
	say("1. built a LLaMA-style model: %d layers, hidden %d, %d heads over %d KV heads, vocabulary %d (%d parameters)",
		c.Model.Layers, c.Model.Hidden, c.Model.Heads, c.Model.KVHeads, c.Model.VocabSize, c.Model.NumParams())

	adapted := base.Clone()
	cfg := adapter.DefaultLoRAConfig(c.Targets...)
	cfg.R, cfg.Alpha = c.R, c.Alpha
	sites, summary, err := rewrite.InjectLoRA(adapted, cfg, rewrite.WithSeed(c.Seed))
	if err != nil {
		return nil, err
	}
	r.Summary, r.Sites = summary, len(sites)
	say("2. injected LoRA r=%d alpha=%g into %d linear layers", c.R, c.Alpha, len(sites))
	say("   %s", summary)

	data := taskData("synthetic-train", 512, c.SeqLen, c.Period, c.Seed)
	eval := taskData("synthetic-eval", 64, c.SeqLen, c.Period, c.Seed+1)
	opts := train.DefaultOptions()
	opts.Steps, opts.BatchSize, opts.SeqLen, opts.PadToSeqLen = c.Steps, c.Batch, c.SeqLen, true
	opts.LR, opts.Warmup, opts.Seed, opts.Session = c.LR, c.Steps/10, c.Seed, c.Session
	tr, err := train.NewTrainer(adapted, summary.Trainable(), data, opts)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	before, err := tr.Evaluate(eval)
	if err != nil {
		return nil, err
	}
	r.LossBefore = before.Loss
	say("3. task: every token t is followed by (5t+3) mod %d; eval loss before training %.4f (ln %d = %.4f)",
		c.Period, before.Loss, c.Model.VocabSize, math.Log(float64(c.Model.VocabSize)))

	trainStart := time.Now()
	tokens := 0
	for tr.Step() < tr.TotalSteps() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := tr.TrainStep()
		if err != nil {
			return nil, err
		}
		tokens += res.Tokens
		if res.Step == 1 || res.Step%20 == 0 || res.Step == tr.TotalSteps() {
			say("   step %3d  loss %.4f  grad-norm %.3f  lr %.2e", res.Step, res.Loss, res.GradNorm, res.LR)
		}
	}
	r.TrainTime = time.Since(trainStart)
	r.TokensPerSecond = float64(tokens) / r.TrainTime.Seconds()
	after, err := tr.Evaluate(eval)
	if err != nil {
		return nil, err
	}
	r.LossAfter = after.Loss
	say("4. trained %d steps in %.1fs (%.0f tokens/s); eval loss %.4f -> %.4f",
		tr.Step(), r.TrainTime.Seconds(), r.TokensPerSecond, before.Loss, after.Loss)

	trained, err := tr.Model()
	if err != nil {
		return nil, err
	}
	if r.FrozenUnchanged, err = checkFrozen(base, trained); err != nil {
		return nil, err
	}
	merged := trained.Clone()
	if err := rewrite.Merge(merged); err != nil {
		return nil, err
	}
	r.MergedNodes = len(merged.Graph().Node)
	if r.MergedNodes != r.BaseNodes {
		return nil, fmt.Errorf("demo: merged model has %d nodes, base %d", r.MergedNodes, r.BaseNodes)
	}

	ids := evalInputs(eval, 8)
	baseLogits, err := logits(base, ids, c.Session)
	if err != nil {
		return nil, err
	}
	adaptedLogits, err := logits(trained, ids, c.Session)
	if err != nil {
		return nil, err
	}
	mergedLogits, err := logits(merged, ids, c.Session)
	if err != nil {
		return nil, err
	}
	r.MergedMaxDiff = maxAbsDiff(adaptedLogits.ToFloat32(), mergedLogits.ToFloat32())
	scale := maxAbs(adaptedLogits.ToFloat32())
	if r.MergedMaxDiff > 1e-4*math.Max(1, scale) {
		return nil, fmt.Errorf("demo: merged and adapted logits differ by %g (scale %g)", r.MergedMaxDiff, scale)
	}
	r.AccuracyBefore = accuracy(baseLogits, ids, c.Period)
	r.AccuracyAfter = accuracy(mergedLogits, ids, c.Period)
	say("5. merged the adapter: %d nodes, as the base has; merged vs adapted logits differ by at most %.2e", r.MergedNodes, r.MergedMaxDiff)
	say("   %d frozen weights are bit-identical to the base's", r.FrozenUnchanged)
	say("   greedy next-token accuracy on held-out sequences: base %.1f%%, merged %.1f%%", 100*r.AccuracyBefore, 100*r.AccuracyAfter)
	if c.OutDir != "" {
		ad, err := tr.Adapter()
		if err != nil {
			return nil, err
		}
		if err := save(c.OutDir, base, trained, merged, ad); err != nil {
			return nil, err
		}
		say("6. wrote base.onnx, adapted.onnx, merged.onnx and adapter/ (HF PEFT) to %s", c.OutDir)
	}
	r.Total = time.Since(start)
	say("done in %.1fs", r.Total.Seconds())
	if !(r.LossAfter < r.LossBefore) {
		return r, fmt.Errorf("demo: training did not lower the eval loss (%.4f -> %.4f)", r.LossBefore, r.LossAfter)
	}
	return r, nil
}

// checkFrozen verifies that every initializer of base has the same bytes
// in trained, and returns how many it compared.
func checkFrozen(base, trained *graph.Model) (int, error) {
	n := 0
	for _, init := range base.Graph().Initializer {
		t := trained.Initializer(init.Name)
		if t == nil {
			return n, fmt.Errorf("demo: frozen weight %q is missing after training", init.Name)
		}
		a, err := base.TensorBytes(init)
		if err != nil {
			return n, err
		}
		b, err := trained.TensorBytes(t)
		if err != nil {
			return n, err
		}
		if string(a) != string(b) {
			return n, fmt.Errorf("demo: frozen weight %q changed during training", init.Name)
		}
		n++
	}
	return n, nil
}

// save writes the demo's models and adapter to dir.
func save(dir string, base, trained, merged *graph.Model, ad *adapter.Adapter) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for name, m := range map[string]*graph.Model{"base.onnx": base, "adapted.onnx": trained, "merged.onnx": merged} {
		if err := m.Save(filepath.Join(dir, name), graph.SaveOptions{}); err != nil {
			return err
		}
	}
	return adapter.SaveDir(filepath.Join(dir, "adapter"), ad)
}
