package main

import (
	ctxpkg "context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/procmem"
	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/tokenizer"
	"github.com/peftonnx/peftonnx/train"
)

func init() {
	register(&command{
		name: "train",
		args: "MODEL --data FILE.jsonl --out DIR [--eval FILE] [--tokenizer tokenizer.json] [--epochs N] [--steps N] " +
			"[--batch N] [--seq-len N] [--lr LR] [--weight-decay WD] [--warmup N] [--schedule constant|linear|cosine] " +
			"[--clip 1.0] [--grad-accum N] [--lora-plus-scale S] [--seed N] [--log-json FILE] [--device cpu|cuda] [--threads N] [--low-memory] [--recompute-products] [--recompute-layers] [--loss-chunks N] " +
			"[--loss auto|causal|token|classification|mse] [--output NAME] [--half upcast|keep] [--loss-scale S] " +
			"[--checkpoint-every N] [--eval-every N] [--resume] [--stop-after N] [--merged OUT.onnx [--dequantize|--requantize]] [--format hf|paddle] [--tensor-parallel-degree N] [--merge-tensor-parallel=false]",
		summary: "train the adapter of an adapted model and save it as a HuggingFace PEFT directory",
		detail: `
MODEL is a model that "peftonnx inject" (or "apply", or "prefix") adapted:
its LoRA factors (or prefix table) train, together with the biases and
modules that the LoRA config's trainable_bias and trainable_modules name;
every other weight stays frozen, bit for bit. Gradients come from an ONNX
graph that peftonnx derives from MODEL, run on ONNX Runtime; AdamW runs in
Go, with HF Trainer's defaults. --lora-plus-scale S trains the B factors at
S times the learning rate (LoRA+, PaddleNLP's lora_plus_scale); by default
the adapter config's value, which "inject --lora-plus-scale" records.

--data is JSONL, one example per line:
  {"input_ids": [..], "labels": [..]}   labels optional, -100 is ignored
  {"text": ".."}                        with --tokenizer
  {"src": "..", "tgt": ".."}            with --tokenizer; loss on tgt only
A classification example adds "label": N; a regression (MSE) example
"target": [..], the values it wants from the scored output, flattened.
Any other field named after a model input feeds that input as it is
("input_mask": [..], "segment_ids": [..]; a mask, token types or
positions may also use their HF names attention_mask, token_type_ids and
position_ids): one value per token, or the input's fixed size per
example.

Every input is fed in the element type and shape that MODEL declares
(int32 or int64 ids and masks alike). Inputs that the data does not give
get a default, which the run names once: a mask of ones over the tokens
(zeros at padding), token types of zeros, positions 0, 1, 2, …, an empty
KV cache, zero recurrent or convolution states (past_conv.0, …). Other
inputs must come from the data or have a default in MODEL. The first
batch is checked against MODEL's inputs before the gradient graph is
built: a bad feed fails at once, naming the input, its declared type and
shape, and what was given.

--loss picks the loss. causal is the causal LM's, each position scored
against the next token; token scores each position against its own
label, without the shift (masked LM, token classification; -100 skips a
position); classification scores [batch, classes] logits against each
example's "label"; mse fits the scored output to each example's
"target". auto reads the outputs and says what it chose and why:
"logits" [batch, seq, vocab] is a causal LM (with a warning where MODEL
looks like an encoder: token types, no causal mask), "logits" [batch,
classes] a classifier, and a model without logits is fitted by MSE on its
first output (or --output), with a warning.

A float16 or bfloat16 model trains on a float32 copy of its graph (--half
upcast, the default); --half keep trains the graph in its own types, with
the loss scaled by --loss-scale (a power of two, default 1024). The
adapter keeps the element type that inject gave it (float32 by default).

Frozen weights that MODEL keeps in an external data file are read by ONNX
Runtime from that file; no copy of them is made in memory. ONNX Runtime
does keep a pre-packed copy of each frozen matrix for each direction it
is multiplied in (forward and backward); --low-memory turns that off:
on a GPT-2-small-sized model about 0.5 GB less at peak, for steps about
10% slower. --recompute-products has the backward pass compute again the
products with frozen weights that it needs (an MLP's gate and up
projections) instead of keeping them: about 0.3 GB less there, for steps
about 25% slower. The two add up. On an int4 base (MatMulNBits layers)
the int4 products are recomputed by default, as QLoRA recipes checkpoint
by default: there the kept activations are most of a step's memory;
--recompute-products=false keeps them. --recompute-layers checkpoints whole
decoder layers: the backward pass computes each layer again from the value
that entered it, and only the residual stream between layers is kept. A causal LM's head and loss run in
--loss-chunks pieces over the sequence (default 8; 0 for the whole), so
that the [batch, seq, vocab] logits are never whole: on GPT-2's vocabulary
at 8×128 about 0.55 GB less, at no cost in time.

DIR receives, at the end, adapter_config.json and adapter_model.safetensors
(the layout "peftonnx apply" and HF PEFT read; with --format paddle
PaddleNLP's lora_config.json and lora_model_state.pdparams, or
prefix_config.json, prefix_model_state.pdparams and pre_caches.npy, as
its save_pretrained writes them), loss.png (the loss curve),
and checkpoint-N folders: one at the end and every --checkpoint-every
steps. A run that is stopped (Ctrl-C, or --stop-after N steps) writes a
checkpoint first; --resume continues from the newest one, and ends with
the same adapter, bit for bit, as a run that was never stopped, when
LoRA dropout is 0. --resume is needed to reuse a DIR that holds
checkpoints. --eval reports the eval loss (and perplexity, or accuracy)
every --eval-every steps and at the end. --log-json writes one JSON line
per step, {"step":..,"loss":..,"lr":..,"grad_norm":..}, and per
evaluation. --merged also writes MODEL with the trained adapter folded in,
as "peftonnx merge" does; into int4 (MatMulNBits) layers or int8 QDQ
weights only with merge's --dequantize or --requantize, and a model that
cannot be merged so is refused before the first step.

Under an MPI launcher (mpirun -np N peftonnx train ..., srun --mpi=pmix;
a binary built with MPI, as "make build" does where Open MPI is
installed), the N ranks train one adapter by data parallelism: --batch is
per rank, each rank trains on its share of every batch of N×--batch
examples, the gradients are summed over the ranks before clipping, and
the run equals one process with --batch N×--batch (up to float rounding).
Rank 0 alone prints, logs and writes DIR; every rank reads MODEL and the
data. --threads defaults to the cores divided by the ranks on the
machine, and --device cuda gives each rank the GPU of its index there. Ctrl-C (mpirun forwards it) and --stop-after stop every rank
after the same step, with a checkpoint. A rank that fails ends the whole
job with its error.

--tensor-parallel-degree N (under mpirun -np P, P a multiple of N) shards
the model N ways by tensor parallelism, as Megatron-LM and PaddleNLP do,
and the P/N groups train by data parallelism; --batch is per group. It
takes the LLaMA decoders that peftonnx builds (float32) with LoRA
(without a KV cache) or with a prefix ("peftonnx prefix", whose table is
split by KV heads), and the causal LM loss; checkpoints, --resume,
--stop-after and --eval work as above, and the checkpoints are one
process's (either resumes the other's, at any degree). LoRA dropout draws
its masks on the host from --seed, the same for any P and N, not those of
one process without --tensor-parallel-degree. --merged is not supported.
Rank 0 gathers the shards and writes one whole adapter, whose config
says tensor_parallel_degree -1 (PaddleNLP's merge_tensor_parallel);
--merge-tensor-parallel=false (with --format paddle, LoRA) writes
PaddleNLP's shards instead, lora_config.json with the degree and
lora_model_state.tp00.pdparams … one a rank, all by rank 0 into DIR
("peftonnx shards merge" makes them one adapter).

Every output is written to a temporary file and renamed, and appears only
when the run succeeds (the log and a checkpoint also when it is stopped).
A run that fails leaves nothing behind but the checkpoints it completed
before: bad input fails before training starts, and a NaN or infinite
loss stops the run with the step it happened at. MODEL and the data are
never changed.`,
		run: runTrain,
	})
}

// trainFlags holds the train command's flags.
type trainFlags struct {
	data, out, eval, tokenizer, logJSON, device, merged string
	format                                              string
	loss, output, schedule, half                        string
	epochs, steps, batch, seqLen, warmup, gradAccum     int
	threads, checkpointEvery, evalEvery, stopAfter      int
	lr, weightDecay, clip, lossScale, loraPlus          float64
	seed                                                uint64
	resume, lowMemory, recomputeLayers                  bool
	recomputeProducts                                   train.Products
	lossChunks                                          int
	tpDegree                                            int
	mergeTP                                             bool
	quantizedMerge                                      quantizedMergeFlags
}

func runTrain(cx *context, args []string) error {
	fs := cx.flags()
	var f trainFlags
	fs.StringVar(&f.data, "data", "", "training examples, `FILE.jsonl` (required)")
	fs.StringVar(&f.out, "out", "", "write the adapter, loss plot and checkpoints to `DIR` (required)")
	fs.StringVar(&f.format, "format", formatHF, "the adapter's layout in DIR: `hf` (HF PEFT) or paddle (PaddleNLP)")
	fs.StringVar(&f.eval, "eval", "", "evaluation examples, `FILE.jsonl`")
	fs.StringVar(&f.tokenizer, "tokenizer", "", "HuggingFace `tokenizer.json`, for text examples")
	fs.IntVar(&f.epochs, "epochs", 3, "passes over the data, `N` (unless --steps)")
	fs.IntVar(&f.steps, "steps", 0, "optimizer steps `N`; 0 trains by --epochs")
	fs.IntVar(&f.batch, "batch", 8, "examples per micro-batch, `N`")
	fs.IntVar(&f.seqLen, "seq-len", 0, "truncate examples to `N` tokens; 0: no limit")
	fs.Float64Var(&f.lr, "lr", 5e-5, "peak learning rate `LR`")
	fs.Float64Var(&f.weightDecay, "weight-decay", 0, "AdamW weight decay `WD` (biases and norms are exempt)")
	fs.IntVar(&f.warmup, "warmup", 0, "warmup steps `N`")
	fs.StringVar(&f.schedule, "schedule", "linear", "learning-rate schedule: constant, `linear` or cosine")
	fs.Float64Var(&f.clip, "clip", 1.0, "clip the global gradient norm to `C`; 0 turns clipping off")
	fs.IntVar(&f.gradAccum, "grad-accum", 1, "micro-batches per optimizer step, `N`")
	fs.Float64Var(&f.loraPlus, "lora-plus-scale", 0, "LoRA+: train the B factors at `S` times the learning rate; 0 takes the adapter config's lora_plus_scale (else 1)")
	fs.Uint64Var(&f.seed, "seed", 42, "seed `N` of the data order")
	fs.StringVar(&f.logJSON, "log-json", "", "write one JSON line per step and evaluation to `FILE`")
	fs.StringVar(&f.device, "device", "cpu", "train on `cpu`, cuda or cuda:N")
	fs.IntVar(&f.threads, "threads", 0, "intra-op threads, `N`; 0 lets ONNX Runtime choose")
	fs.BoolVar(&f.lowMemory, "low-memory", false, "keep no pre-packed copy of the frozen weights: less memory, slower steps")
	fs.Var(productsFlag{&f.recomputeProducts}, "recompute-products", "recompute the products with frozen weights that the backward pass needs: less memory, slower steps (default: on an int4 base only; =false keeps them there too)")
	fs.BoolVar(&f.recomputeLayers, "recompute-layers", false, "checkpoint whole decoder layers: recompute each layer in the backward pass from its input; the least memory, slower steps")
	fs.IntVar(&f.lossChunks, "loss-chunks", train.DefaultOptions().LossChunks, "compute a causal LM's head and loss in `N` chunks over the sequence; 0: whole")
	fs.StringVar(&f.loss, "loss", "auto", "loss: `auto`, causal, token, classification or mse")
	fs.StringVar(&f.output, "output", "", "the model output the loss scores, `NAME` (default: logits, else the first)")
	fs.StringVar(&f.half, "half", "upcast", "float16 models: `upcast` to float32 for training, or keep")
	fs.Float64Var(&f.lossScale, "loss-scale", 0, "loss scale `S` with --half keep (a power of two; 0: 1024)")
	fs.IntVar(&f.checkpointEvery, "checkpoint-every", 0, "write a checkpoint every `N` steps (0: at the end only)")
	fs.IntVar(&f.evalEvery, "eval-every", 0, "evaluate --eval every `N` steps (0: at the end only)")
	fs.BoolVar(&f.resume, "resume", false, "continue from the newest checkpoint in --out")
	fs.IntVar(&f.stopAfter, "stop-after", 0, "stop after `N` steps of this run, with a checkpoint (continue with --resume)")
	fs.StringVar(&f.merged, "merged", "", "also write the model with the trained adapter merged to `OUT.onnx`")
	f.quantizedMerge.add(fs)
	fs.IntVar(&f.tpDegree, "tensor-parallel-degree", 1, "shard the model among `N` ranks by tensor parallelism (under mpirun; -np a multiple of N)")
	fs.BoolVar(&f.mergeTP, "merge-tensor-parallel", true, "with --tensor-parallel-degree: write one whole adapter; false writes PaddleNLP's shards (--format paddle)")
	model, err := cx.parseOne(args, "MODEL")
	if err != nil {
		return err
	}
	opts, err := f.options(cx)
	if err != nil {
		return err
	}
	ranks, err := joinTrainRanks()
	if err != nil {
		return err
	}
	ranks.configure(&opts, f.threads, f.device)
	if f.tpDegree > 1 {
		return ranks.run(cx, func() error { return trainTensorParallel(cx, model, &f, opts, ranks) })
	}
	return ranks.run(cx, func() error { return trainModel(cx, model, &f, opts, ranks) })
}

// options checks the flags and turns them into trainer options.
func (f *trainFlags) options(cx *context) (train.Options, error) {
	o := train.DefaultOptions()
	switch {
	case f.data == "":
		return o, cx.usagef("--data FILE.jsonl is required")
	case f.out == "":
		return o, cx.usagef("--out DIR is required")
	case f.format != formatHF && f.format != formatPaddle:
		return o, cx.usagef("--format must be hf or paddle, got %q", f.format)
	case f.epochs <= 0 && f.steps == 0:
		return o, cx.usagef("--epochs must be positive, got %d", f.epochs)
	case f.steps < 0:
		return o, cx.usagef("--steps must be 0 or more, got %d", f.steps)
	case f.batch <= 0:
		return o, cx.usagef("--batch must be positive, got %d", f.batch)
	case f.seqLen < 0:
		return o, cx.usagef("--seq-len must be 0 or more, got %d", f.seqLen)
	case !(f.lr >= 0) || math.IsInf(f.lr, 0):
		return o, cx.usagef("--lr must be 0 or more, got %v", f.lr)
	case !(f.weightDecay >= 0) || math.IsInf(f.weightDecay, 0):
		return o, cx.usagef("--weight-decay must be 0 or more, got %v", f.weightDecay)
	case f.warmup < 0:
		return o, cx.usagef("--warmup must be 0 or more, got %d", f.warmup)
	case !(f.clip >= 0):
		return o, cx.usagef("--clip must be 0 or more, got %v", f.clip)
	case f.gradAccum <= 0:
		return o, cx.usagef("--grad-accum must be positive, got %d", f.gradAccum)
	case !(f.loraPlus >= 0) || math.IsInf(f.loraPlus, 0):
		return o, cx.usagef("--lora-plus-scale must be 0 or more, got %v", f.loraPlus)
	case f.threads < 0:
		return o, cx.usagef("--threads must be 0 or more, got %d", f.threads)
	case f.checkpointEvery < 0 || f.evalEvery < 0:
		return o, cx.usagef("--checkpoint-every and --eval-every must be 0 or more")
	case f.stopAfter < 0:
		return o, cx.usagef("--stop-after must be 0 or more, got %d", f.stopAfter)
	case f.tpDegree < 1:
		return o, cx.usagef("--tensor-parallel-degree must be 1 or more, got %d", f.tpDegree)
	case !f.mergeTP && f.tpDegree < 2:
		return o, cx.usagef("--merge-tensor-parallel=false needs --tensor-parallel-degree 2 or more")
	case (f.quantizedMerge.dequantize || f.quantizedMerge.requantize) && f.merged == "":
		return o, cx.usagef("--dequantize and --requantize say how --merged merges into quantized weights: add --merged OUT.onnx")
	case f.quantizedMerge.dequantize && f.quantizedMerge.requantize:
		return o, cx.usagef("--dequantize and --requantize exclude each other: an int4 layer is merged into a float weight or back into int4")
	case !f.mergeTP && f.format != formatPaddle:
		return o, cx.usagef("--merge-tensor-parallel=false writes PaddleNLP's shards: add --format paddle (an HF PEFT directory is always whole)")
	}
	switch strings.ToLower(f.schedule) {
	case "constant", "linear", "cosine":
	default:
		return o, cx.usagef("--schedule must be constant, linear or cosine, got %q", f.schedule)
	}
	switch strings.ToLower(f.loss) {
	case "auto", "":
	case "causal", "causal_lm", "clm":
		o.Task = train.CausalLM
	case "token", "mlm", "masked_lm", "token_classification", "token-classification":
		o.Task = train.TokenClassification
	case "classification", "seq_cls", "cls":
		o.Task = train.SequenceClassification
	case "mse", "regression":
		o.Task = train.Regression
	default:
		return o, cx.usagef("--loss must be auto, causal, token, classification or mse, got %q", f.loss)
	}
	switch h := train.HalfPolicy(f.half); h {
	case train.Upcast, train.KeepHalf:
		o.Half = h
	default:
		return o, cx.usagef("--half must be upcast or keep, got %q", f.half)
	}
	if f.lossScale != 0 {
		if frac, _ := math.Frexp(f.lossScale); !(f.lossScale > 0) || frac != 0.5 || math.IsInf(f.lossScale, 0) {
			return o, cx.usagef("--loss-scale must be a power of two, got %v", f.lossScale)
		}
	}
	o.Output = f.output
	o.Epochs, o.Steps, o.BatchSize, o.GradAccum, o.SeqLen = f.epochs, f.steps, f.batch, f.gradAccum, f.seqLen
	o.LR, o.Schedule, o.Warmup, o.Clip, o.Seed = f.lr, strings.ToLower(f.schedule), f.warmup, f.clip, f.seed
	o.AdamW.WeightDecay = f.weightDecay
	o.LoRAPlusScale = f.loraPlus // 0: the trainer takes the model's recorded lora_plus_scale
	o.RecomputeProducts = f.recomputeProducts
	o.LossChunks = f.lossChunks
	o.RecomputeLayers = f.recomputeLayers
	o.LossScale = f.lossScale
	o.CheckpointDir, o.CheckpointEvery, o.EvalEvery = f.out, f.checkpointEvery, f.evalEvery
	o.Session = []ortrt.Option{ortrt.WithDevice(f.device), ortrt.WithIntraOpThreads(f.threads), ortrt.WithPrepacking(!f.lowMemory)}
	return o, nil
}

// loadTrainable loads the model at path and returns it with the summary
// of the adapter it carries (rewrite.Summarize), or the error that says it
// has none to train. The caller closes the model.
func loadTrainable(path string) (*graph.Model, rewrite.Summary, error) {
	m, err := graph.Load(path)
	if err != nil {
		return nil, rewrite.Summary{}, err
	}
	sum, err := trainableOf(path, m)
	if err != nil {
		m.Close()
		return nil, rewrite.Summary{}, err
	}
	return m, sum, nil
}

// trainableOf returns the summary of the adapter that m carries, or the
// error that says it has none to train.
func trainableOf(path string, m *graph.Model) (rewrite.Summary, error) {
	if sites, err := rewrite.Sites(m); err == nil && slices.ContainsFunc(sites, func(s rewrite.Site) bool { return s.AsInputs }) {
		return rewrite.Summary{}, fmt.Errorf("train: %s takes its LoRA factors as graph inputs (inject --as-inputs), so it holds no adapter to train: inject without --as-inputs", path)
	}
	sum, err := rewrite.Summarize(m)
	if errors.Is(err, rewrite.ErrNoAdapter) {
		return rewrite.Summary{}, fmt.Errorf("train: %s has no adapter (run peftonnx inject first)", path)
	}
	return sum, err
}

// prepareTrainRun does what every way of training does between loading
// the model and building its trainer: rank 0 claims --out and checks the
// outputs, each rank loads the data (which gives opts its pad id) and
// starts ONNX Runtime. The returned log writes --log-json on rank 0 and
// nothing on the others. The caller defers release, then log.abort; on an
// error, prepareTrainRun has released what it claimed.
func prepareTrainRun(modelPath string, m *graph.Model, f *trainFlags, opts *train.Options, ranks trainRanks) (data *train.Dataset, log *trainLog, release func(), err error) {
	release = func() {}
	if ranks.leader() {
		claimed, err := claimTrainOut(f)
		if err != nil {
			return nil, nil, nil, err
		}
		release = claimed
		defer func() {
			if release == nil { // returned with an error
				claimed()
			}
		}()
		if err := checkTrainOutputs(f, m); err != nil {
			return nil, nil, nil, err
		}
	}
	if data, err = loadTrainData(modelPath, m, f, opts); err != nil {
		return nil, nil, nil, err
	}
	if err = ortrt.Init(); err != nil {
		return nil, nil, nil, err
	}
	log = &trainLog{path: f.logJSON}
	if !ranks.leader() {
		log.path = ""
	}
	return data, log, release, nil
}

// trainModel runs the command once the flags are checked, on one of the
// ranks: rank 0 alone checks and writes the outputs and prints.
func trainModel(cx *context, modelPath string, f *trainFlags, opts train.Options, ranks trainRanks) error {
	cx = &context{cmd: cx.cmd, stdout: ranks.output(cx.stdout), stderr: cx.stderr}
	m, sum, err := loadTrainable(modelPath)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := rewrite.PrefixSiteOf(m); err == nil && f.merged != "" {
		return fmt.Errorf("train: --merged: %s carries a prefix, which has no weights to fold into the model's", modelPath)
	}
	if f.merged != "" {
		// The trained model has m's layers: what Merge refuses in it, it
		// refuses now, before the training that --merged would end with.
		if err := rewrite.CheckMerge(m, f.quantizedMerge.options()...); err != nil {
			return fmt.Errorf("train: --merged: %s cannot be merged: %w (train takes merge's --dequantize and --requantize; without --merged the adapter is written alone)", modelPath, err)
		}
	}
	data, log, release, err := prepareTrainRun(modelPath, m, f, &opts, ranks)
	if err != nil {
		return err
	}
	defer release()
	if log.path != "" {
		opts.LogJSON = log
	}
	defer log.abort()

	ctx, stop := signal.NotifyContext(ctxpkg.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := ctxpkg.WithCancel(ctx)
	defer cancel()
	progress := newTrainProgress(ranks.output(cx.stderr))
	ran, fed := 0, 0
	opts.OnStep = func(r train.StepResult) {
		ran++
		fed += r.InputTokens
		progress.update(r)
		if f.stopAfter > 0 && ran >= f.stopAfter {
			cancel()
		}
	}

	tr, err := train.NewTrainer(m, sum.Trainable(), data, opts)
	if err != nil {
		return err
	}
	defer tr.Close()
	if f.resume {
		// Train resumes as well (and finds the same checkpoint); resuming
		// first checks the checkpoint before anything is printed.
		if _, err := tr.Resume(f.out); err != nil {
			return err
		}
	}
	fmt.Fprintf(cx.stdout, "%s\n", sum)
	fmt.Fprintf(cx.stdout, "task: %s\n", describeTask(tr))
	for _, w := range tr.TaskChoice().Warnings {
		fmt.Fprintf(cx.stderr, "peftonnx: warning: %s (--loss causal|token|classification|mse and --output NAME choose the loss)\n", w)
	}
	for _, n := range tr.FeedNotes() {
		fmt.Fprintf(cx.stdout, "feed: %s\n", n)
	}
	startStep := tr.Step()
	if f.resume {
		fmt.Fprintf(cx.stdout, "resumed at step %d of %d from %s\n", startStep, tr.TotalSteps(), filepath.Join(f.out, fmt.Sprintf("checkpoint-%d", startStep)))
	}
	start := time.Now()
	err = tr.Train(ctx)
	progress.done()
	elapsed := time.Since(start)
	// Of several ranks, all stop after the same step when one is stopped
	// (its context is done): Train's error says so on the others.
	stopped := err != nil && (ctx.Err() != nil || ranks.many()) && errors.Is(err, ctxpkg.Canceled)
	if err == nil || stopped {
		// The log of a stopped run is the start of the resumed run's.
		if cerr := log.commit(); cerr != nil && err == nil {
			err = cerr
		}
	}
	switch {
	case stopped:
		cp := filepath.Join(f.out, fmt.Sprintf("checkpoint-%d", tr.Step()))
		if f.stopAfter > 0 && ran >= f.stopAfter {
			fmt.Fprintf(cx.stdout, "stopped after %d steps at step %d of %d; checkpoint %s; continue with --resume\n", ran, tr.Step(), tr.TotalSteps(), cp)
			return nil
		}
		return fmt.Errorf("train: interrupted at step %d of %d; checkpoint %s; continue with --resume", tr.Step(), tr.TotalSteps(), cp)
	case err != nil:
		return err
	case !ranks.leader():
		return nil
	}
	files, changed, err := writeTrainResults(f, m, tr)
	if err != nil {
		return err
	}
	printTrainSummary(cx, tr.History(), tr.Step(), startStep, ran, fed, elapsed, f, files)
	if err := writeQuantizedMerges(cx, changed); err != nil {
		return err
	}
	if ranks.many() {
		fmt.Fprintf(cx.stdout, "data parallel: %d ranks × batch %d, %d bytes all-reduced per step\n", ranks.world.Size(), f.batch, tr.AllReducedBytes())
	}
	return nil
}

// loadTrainData reads the tokenizer (checked against m, read from
// modelPath, and giving opts its pad id), the training data, which it
// returns, and the evaluation data into opts.Eval.
func loadTrainData(modelPath string, m *graph.Model, f *trainFlags, opts *train.Options) (*train.Dataset, error) {
	var tok *tokenizer.Tokenizer
	if f.tokenizer != "" {
		var err error
		if tok, err = tokenizer.Load(f.tokenizer); err != nil {
			return nil, err
		}
		if vocab, ok := train.ModelVocab(m); ok {
			if err := tok.CheckModelVocab(vocab); err != nil {
				return nil, fmt.Errorf("%w: the tokenizer does not belong to %s", err, modelPath)
			}
		}
		opts.PadID = tok.PadID()
	}
	data, err := train.LoadJSONL(f.data, tok)
	if err != nil {
		return nil, err
	}
	if f.eval != "" {
		if opts.Eval, err = train.LoadJSONL(f.eval, tok); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// describeTask says what the trainer runs, for the first lines of output.
func describeTask(tr *train.Trainer) string {
	var s string
	switch tr.Task() {
	case train.CausalLM:
		s = "causal LM loss on " + tr.Output()
	case train.SequenceClassification:
		s = "classification loss on " + tr.Output()
	case train.TokenClassification:
		s = "token loss (no shift) on " + tr.Output()
	default:
		s = "MSE on " + tr.Output()
	}
	if tr.Upcast() {
		s += " (16-bit graph trained in float32)"
	}
	s = fmt.Sprintf("%s, %d steps", s, tr.TotalSteps())
	if why := tr.TaskChoice().Reason; why != "" {
		s += " (auto: " + why
		if tr.Task() == train.Regression {
			s += ": --loss and --output choose them"
		}
		s += ")"
	}
	return s
}

// checkTrainOutputs refuses outputs that would clash with each other,
// with the inputs, or with an earlier run, before anything is written.
func checkTrainOutputs(f *trainFlags, m *graph.Model) error {
	latest, err := train.LatestCheckpoint(f.out)
	if err != nil {
		return err
	}
	switch {
	case f.resume && latest == "":
		return fmt.Errorf("train: --resume: %s holds no checkpoint to resume from", f.out)
	case !f.resume && latest != "":
		return fmt.Errorf("train: %s holds checkpoints of an earlier run (%s): pass --resume to continue it, or choose another --out", f.out, filepath.Base(latest))
	}
	if f.merged != "" {
		if err := checkOutput(f.merged, m, f.data, f.eval); err != nil {
			return fmt.Errorf("train: --merged: %w", err)
		}
	}
	if f.logJSON != "" {
		if st, err := os.Stat(f.logJSON); err == nil && st.IsDir() {
			return fmt.Errorf("train: --log-json %s is a directory; want a file name", f.logJSON)
		}
		for _, in := range append(inputFiles(m), f.data, f.eval) {
			if trainSameFile(f.logJSON, in) {
				return fmt.Errorf("train: --log-json %s would overwrite the input %s", f.logJSON, in)
			}
		}
	}
	return nil
}

// trainSameFile reports whether a and b name one existing file.
func trainSameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil || b == "" {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

// writeTrainResults writes the adapter, the loss plot and the merged
// model, and names the adapter's files; changed lists the int4 layers the
// merge changed. The merge is done first, so that a merge that fails
// leaves no adapter behind either.
func writeTrainResults(f *trainFlags, base *graph.Model, tr *train.Trainer) (files string, changed []rewrite.QuantizedMerge, err error) {
	out, err := tr.Adapter()
	if err != nil {
		return "", nil, err
	}
	var merged *graph.Model
	if f.merged != "" {
		if merged, err = tr.Model(); err != nil {
			return "", nil, err
		}
		if changed, err = rewrite.MergeWith(merged, f.quantizedMerge.options()...); err != nil {
			return "", nil, fmt.Errorf("train: --merged: %w", err)
		}
	}
	if _, files, err = saveAdapterDir(f.out, out, f.format); err != nil {
		return "", nil, err
	}
	if err := trainWriteLossPlot(filepath.Join(f.out, "loss.png"), tr.History()); err != nil {
		return "", nil, err
	}
	if merged != nil {
		if err := saveModel(merged, f.merged, hasExternalData(base)); err != nil {
			return "", nil, err
		}
	}
	return files, changed, nil
}

// printTrainSummary says what the run did: history is its log, step the
// step it ended at.
func printTrainSummary(cx *context, history []train.LogRecord, step, startStep, ran, fed int, elapsed time.Duration, f *trainFlags, files string) {
	w := cx.stdout
	var first, last *float64
	var eval *train.LogRecord
	for _, r := range history {
		if r.Loss != nil {
			if first == nil {
				first = r.Loss
			}
			last = r.Loss
		}
		if r.EvalLoss != nil {
			eval = &r
		}
	}
	line := fmt.Sprintf("trained %d steps", step)
	if startStep > 0 {
		line += fmt.Sprintf(" (%d in this run, resumed at step %d)", ran, startStep)
	}
	line += fmt.Sprintf(" in %s", elapsed.Round(time.Millisecond))
	if first != nil && last != nil {
		line += fmt.Sprintf(": loss %.4f -> %.4f", *first, *last)
	}
	if ran > 0 && elapsed > 0 {
		line += fmt.Sprintf(", %.0f tokens/s", float64(fed)/elapsed.Seconds())
	}
	if peak, ok := procmem.Peak(); ok {
		line += fmt.Sprintf(", peak memory %.2f GiB", float64(peak)/(1<<30))
	}
	fmt.Fprintln(w, line)
	if eval != nil {
		s := fmt.Sprintf("eval loss %.4f", *eval.EvalLoss)
		if eval.EvalPerplexity != nil {
			s += fmt.Sprintf(", perplexity %.3f", *eval.EvalPerplexity)
		}
		if eval.EvalAccuracy != nil {
			s += fmt.Sprintf(", accuracy %.3f", *eval.EvalAccuracy)
		}
		fmt.Fprintf(w, "%s (%s)\n", s, f.eval)
	}
	fmt.Fprintf(w, "adapter: %s (%s), loss curve %s\n", f.out, files, filepath.Join(f.out, "loss.png"))
	if f.logJSON != "" {
		fmt.Fprintf(w, "log: %s\n", f.logJSON)
	}
	if f.merged != "" {
		fmt.Fprintf(w, "merged model: %s\n", f.merged)
	}
}
