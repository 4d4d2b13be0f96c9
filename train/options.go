package train

import (
	"cmp"
	"io"
	"math"

	rt "github.com/peftonnx/peftonnx/runtime"
)

// Task says which loss the trainer appends to the model.
type Task string

// The tasks. Each names the loss it appends and the labels its examples
// carry.
const (
	// CausalLM scores next-token prediction with CausalLMLoss; an example's
	// Labels are its token labels.
	CausalLM Task = "causal"
	// TokenClassification scores [batch, seq, classes] logits with
	// TokenClassificationLoss, each position against its own label, not
	// shifted: masked language modelling and token classification. An
	// example's Labels are its token labels (IgnoreIndex where a position
	// is not scored).
	TokenClassification Task = "token"
	// SequenceClassification scores [batch, classes] logits with
	// SequenceClassificationLoss; an example's Label is its class.
	SequenceClassification Task = "classification"
	// Regression scores an output with MSELoss against each example's
	// Target, the output's values for that example, flattened.
	Regression Task = "mse"
)

// HalfPolicy says how a trainer runs a model whose weights or activations
// are float16 or bfloat16.
type HalfPolicy string

const (
	// Upcast trains on a float32 copy of the graph: frozen weights,
	// constants and casts are converted to float32 in the training
	// session only, so gradients never underflow in 16 bits. The model
	// itself is not changed; the adapter keeps its own element type. This
	// is the default: it is exact where float16 backward passes are not,
	// and on CPUs float32 kernels are the fast ones.
	Upcast HalfPolicy = "upcast"
	// KeepHalf runs the graph in its own element types, as inference
	// does (LoRA factors injected as float32 compute in float32 between
	// casts), with the loss multiplied by LossScale before the backward
	// pass and the gradients divided by it after. It halves the memory of
	// frozen weights and activations, which matters on GPUs.
	KeepHalf HalfPolicy = "keep"
)

// Options configures a Trainer. Start from DefaultOptions, which holds HF
// Trainer's defaults.
type Options struct {
	// Task picks the loss (empty: DetectTask decides from the model's
	// outputs); Output names the model output it scores (empty: "logits"
	// when the model has it, else its first output).
	Task   Task
	Output string

	// Epochs is the number of passes over the data, unless Steps > 0
	// fixes the number of optimizer steps instead (HF max_steps).
	Epochs int
	Steps  int
	// BatchSize is the number of examples per micro-batch; GradAccum the
	// number of micro-batches per optimizer step.
	BatchSize int
	GradAccum int
	// SeqLen truncates examples to this many tokens (0: no limit).
	// PadToSeqLen pads every batch to SeqLen, so that every step has the
	// same shape.
	SeqLen      int
	PadToSeqLen bool
	// PadID fills padded positions; the tokenizer's PadID is a good
	// choice. Padding is masked out of attention and loss.
	PadID int64

	// LR is the peak learning rate, Schedule its shape ("constant",
	// "linear" or "cosine") and Warmup the number of warmup steps.
	LR       float64
	Schedule string
	Warmup   int
	// LoRAPlusScale multiplies the learning rate of the LoRA B factors
	// (parameters whose name holds "lora_B"), as PaddleNLP's
	// lora_plus_scale does (LoRA+). 0 takes the lora_plus_scale that the
	// model's LoRA config records (rewrite.AdapterConfig), and without
	// one means 1.
	LoRAPlusScale float64
	// SeededDropout draws the LoRA dropout's masks from Seed on the host
	// (DropoutDraws, SeedLoRADropout) instead of inside ONNX Runtime:
	// each draw is a function of the seed, the micro-batch, the module
	// and the position it drops, so that a run is reproducible, a resumed
	// run bit-identical, and a data- or tensor-parallel run drops what one
	// process drops.
	SeededDropout bool
	// AdamW holds the optimizer's hyperparameters, weight decay included.
	// As in HF Trainer, biases and normalization weights (parameters of
	// rank 1, or whose name says bias or norm) do not decay.
	AdamW AdamWConfig
	// Clip is the maximum global gradient norm; 0 turns clipping off.
	Clip float64
	// Seed drives the data order.
	Seed uint64

	// RecomputeProducts says whether the backward pass computes again the
	// products of activations with frozen weights that it reads (an
	// MLP's gate and up projections) instead of keeping them from the
	// forward pass: the zero value, ProductsAuto, recomputes an int4
	// base's and keeps a float base's (see Products).
	RecomputeProducts Products
	// RecomputeLayers checkpoints whole decoder layers: the backward pass
	// computes again everything a layer made, from the value that entered
	// it, keeping only the residual stream between layers
	// (autodiff.WithRecomputeLayers). The least memory, for about one
	// more forward pass of time.
	RecomputeLayers bool
	// LossChunks computes a causal LM's head and loss in this many chunks
	// over the sequence (WithLossChunks), so that the [batch, seq, vocab]
	// logits and their gradient are never whole; 0 or 1: the whole loss.
	// Other tasks, and logits that are not the product of a float32
	// hidden state by a weight (plus LoRA branches on it), ignore it.
	LossChunks int

	// Half says how a float16 or bfloat16 model is trained (default
	// Upcast). LossScale multiplies the loss before the backward pass
	// with KeepHalf (default 1024); it must be a power of two, so that
	// scaling is exact.
	Half      HalfPolicy
	LossScale float64

	// LogJSON, when set, receives one JSON object per line for every
	// LogEvery steps (default 1) and every evaluation (see LogRecord).
	// A resumed run first writes the records its checkpoint holds, so the
	// log always covers the whole run.
	LogJSON  io.Writer
	LogEvery int
	// OnStep, when set, is called by Train after every optimizer step,
	// before any evaluation or checkpoint of that step; a progress bar
	// hooks in here.
	OnStep func(StepResult)

	// Eval, when set, is evaluated every EvalEvery steps (0: at the end
	// only).
	Eval      *Dataset
	EvalEvery int

	// CheckpointDir, when set, receives a checkpoint every
	// CheckpointEvery steps (0: at the end only) and when Train stops
	// early; Train resumes from the latest one found there.
	// KeepCheckpoints is how many to keep (default 1).
	CheckpointDir   string
	CheckpointEvery int
	KeepCheckpoints int

	// Session holds options for the ONNX Runtime sessions (provider,
	// threads).
	Session []rt.Option

	// Collective, when set, makes the trainer one rank of a data-parallel
	// run (see Collective): every rank trains on its shard of each batch
	// of BatchSize × Size examples, the gradients are summed over the
	// ranks before clipping, and every rank steps the same optimizer.
	// Every rank passes the same model, data and options. nil trains
	// alone.
	Collective Collective
}

// DefaultOptions returns HF Trainer's defaults: 3 epochs, batch 8, learning
// rate 5e-5 on a linear schedule without warmup, AdamW with β1=0.9,
// β2=0.999, ε=1e-8 and no weight decay, clipping at norm 1.0, seed 42. The
// task is detected from the model.
func DefaultOptions() Options {
	return Options{
		Epochs:    3,
		BatchSize: 8,
		GradAccum: 1,
		LR:        5e-5,
		Schedule:  string(Linear),
		AdamW:     DefaultAdamW(),
		Clip:      1.0,
		Seed:      42,
		LogEvery:  1,
		Half:      Upcast,
		// The same work as the whole loss, moved into the forward pass:
		// no time lost, and on a 50,257-word vocabulary at 8×128 some
		// 550 MB less (bench/README.md).
		LossChunks: defaultLossChunks,
	}
}

// defaultLossChunks is DefaultOptions' LossChunks.
const defaultLossChunks = 8

// defaultLossScale is KeepHalf's loss scale unless told otherwise.
const defaultLossScale = 1024

// TotalSteps returns the optimizer steps of a run on data that makes
// batches micro-batches per epoch: Steps, else Epochs passes of at least
// one step each. Trainer and tensorparallel.Trainer plan their schedule
// with it.
func (o *Options) TotalSteps(batches int) int {
	if o.Steps != 0 {
		return o.Steps
	}
	return o.Epochs * max(1, batches/o.GradAccum)
}

// validate checks o and fills in defaults for zero values that have one.
// The task and output are settled by NewTrainer, which sees the model.
func (o *Options) validate() error {
	o.GradAccum = cmp.Or(o.GradAccum, 1)
	o.LogEvery = cmp.Or(o.LogEvery, 1)
	o.KeepCheckpoints = cmp.Or(o.KeepCheckpoints, 1)
	o.Schedule = cmp.Or(o.Schedule, string(Linear))
	o.Half = cmp.Or(o.Half, Upcast)
	if o.LossScale == 0 {
		o.LossScale = 1
		if o.Half == KeepHalf {
			o.LossScale = defaultLossScale
		}
	}
	switch o.Task {
	case "", CausalLM, TokenClassification, SequenceClassification, Regression:
	default:
		return errorf("task %q: want %q, %q, %q or %q", o.Task, CausalLM, TokenClassification, SequenceClassification, Regression)
	}
	switch {
	case o.Steps < 0:
		return errorf("steps %d: want > 0, or 0 to train by epochs", o.Steps)
	case o.Steps == 0 && o.Epochs <= 0:
		return errorf("epochs %d: want > 0", o.Epochs)
	case o.BatchSize <= 0:
		return errorf("batch size %d: want > 0", o.BatchSize)
	case o.GradAccum < 0:
		return errorf("gradient accumulation %d: want > 0", o.GradAccum)
	case o.SeqLen < 0:
		return errorf("sequence length %d: want >= 0", o.SeqLen)
	case math.IsNaN(o.LR) || math.IsInf(o.LR, 0) || o.LR < 0:
		return errorf("learning rate %v", o.LR)
	case o.Warmup < 0:
		return errorf("warmup %d: want >= 0", o.Warmup)
	case math.IsNaN(o.LoRAPlusScale) || math.IsInf(o.LoRAPlusScale, 0) || o.LoRAPlusScale < 0:
		return errorf("LoRA+ scale %v: want >= 0 (0 means 1)", o.LoRAPlusScale)
	case math.IsNaN(o.Clip) || o.Clip < 0:
		return errorf("clip %v: want >= 0 (0 turns clipping off)", o.Clip)
	case o.LogEvery < 0 || o.EvalEvery < 0 || o.CheckpointEvery < 0 || o.KeepCheckpoints < 0:
		return errorf("log, eval and checkpoint intervals must be >= 0")
	case o.Half != Upcast && o.Half != KeepHalf:
		return errorf("half-precision policy %q: want %q or %q", o.Half, Upcast, KeepHalf)
	case !(o.LossScale > 0) || math.IsInf(o.LossScale, 0) || !isPowerOfTwo(o.LossScale):
		return errorf("loss scale %v: want a power of two", o.LossScale)
	}
	if err := o.RecomputeProducts.check(); err != nil {
		return err
	}
	return o.AdamW.Validate()
}

// isPowerOfTwo reports whether x is 2^k for an integer k.
func isPowerOfTwo(x float64) bool {
	frac, _ := math.Frexp(x)
	return frac == 0.5
}
