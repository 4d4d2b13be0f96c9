package train

import (
	"io"
	"math"

	rt "github.com/peftonnx/peftonnx/runtime"
)

// Task says which loss the trainer appends to the model.
type Task string

// CausalLM scores next-token prediction with CausalLMLoss. It is the only
// task the Trainer runs so far.
const CausalLM Task = "causal_lm"

// Options configures a Trainer. Start from DefaultOptions, which holds HF
// Trainer's defaults.
type Options struct {
	// Task picks the loss; Output names the model output it scores
	// (default "logits").
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
	// AdamW holds the optimizer's hyperparameters, weight decay included.
	AdamW AdamWConfig
	// Clip is the maximum global gradient norm; 0 turns clipping off.
	Clip float64
	// Seed drives the data order.
	Seed uint64

	// LogJSON, when set, receives one JSON object per line for every
	// LogEvery steps (default 1) and every evaluation (see LogRecord).
	LogJSON  io.Writer
	LogEvery int

	// Eval, when set, is evaluated every EvalEvery steps (0: at the end
	// only).
	Eval      *Dataset
	EvalEvery int

	// CheckpointDir, when set, receives a checkpoint every
	// CheckpointEvery steps (0: at the end only), and Train resumes from
	// the latest one found there. KeepCheckpoints is how many to keep
	// (default 1).
	CheckpointDir   string
	CheckpointEvery int
	KeepCheckpoints int

	// Session holds options for the ONNX Runtime sessions (provider,
	// threads).
	Session []rt.Option
}

// DefaultOptions returns HF Trainer's defaults: 3 epochs, batch 8, learning
// rate 5e-5 on a linear schedule without warmup, AdamW with β1=0.9,
// β2=0.999, ε=1e-8 and no weight decay, clipping at norm 1.0, seed 42.
func DefaultOptions() Options {
	return Options{
		Task:      CausalLM,
		Output:    "logits",
		Epochs:    3,
		BatchSize: 8,
		GradAccum: 1,
		LR:        5e-5,
		Schedule:  string(Linear),
		AdamW:     DefaultAdamW(),
		Clip:      1.0,
		Seed:      42,
		LogEvery:  1,
	}
}

// validate checks o and fills in defaults for zero values that have one.
func (o *Options) validate() error {
	if o.Task == "" {
		o.Task = CausalLM
	}
	if o.Output == "" {
		o.Output = "logits"
	}
	if o.GradAccum == 0 {
		o.GradAccum = 1
	}
	if o.LogEvery == 0 {
		o.LogEvery = 1
	}
	if o.KeepCheckpoints == 0 {
		o.KeepCheckpoints = 1
	}
	if o.Schedule == "" {
		o.Schedule = string(Linear)
	}
	switch {
	case o.Task != CausalLM:
		return errorf("task %q: the trainer runs %q only", o.Task, CausalLM)
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
	case math.IsNaN(o.Clip) || o.Clip < 0:
		return errorf("clip %v: want >= 0 (0 turns clipping off)", o.Clip)
	case o.LogEvery < 0 || o.EvalEvery < 0 || o.CheckpointEvery < 0 || o.KeepCheckpoints < 0:
		return errorf("log, eval and checkpoint intervals must be >= 0")
	}
	return o.AdamW.Validate()
}
