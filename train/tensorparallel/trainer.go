package tensorparallel

import (
	"cmp"
	"fmt"
	"math"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
)

// Trainer is one rank of a tensor-parallel LoRA run. Every rank of comm
// creates one with the same arguments and calls TrainStep the same number
// of times. Close it when done.
type Trainer struct {
	comm train.Collective
	// dp is the data-parallel group of the ranks that hold the same
	// share of the model (nil: none).
	dp     train.Collective
	cfg    models.LlamaConfig
	opts   train.Options
	lora   *adapter.Adapter // this rank's shard of the adapter, as given
	embed  *piece
	blocks []*piece
	head   *piece
	// start is the first token id of this rank's vocabulary, ids how
	// many it holds, and width that of its logits (padded).
	start, ids, width int
	params            []*train.Param
	// split marks the factors that the ranks split (the others every rank
	// holds whole), by index in params.
	split  []bool
	loader *train.Loader
	opt    *train.AdamW
	sched  *train.Schedule
	total  int
	step   int
	// reduced counts the values this rank all-reduced in the last step.
	reduced int
	// names lists the whole adapter's factors (its modules in order,
	// lora_A then lora_B), and shapes gives their whole shapes: a
	// checkpoint's parameters.
	names  []string
	shapes map[string][]int64
	// examples is the size of the training set.
	examples int
	// history records every step, for checkpoints.
	history []train.LogRecord
	// prefix is this rank's share of a prefix-tuning table (nil: LoRA).
	prefix *prefixShare
	// group gives each of params the gradient norm it counts in: its
	// own for a LoRA factor, the one of the whole table for every layer
	// of a prefix, as one process measures it.
	group []int
}

// New prepares rank comm.Rank()'s share of training lora, a LoRA adapter
// for full (a model that models.Llama built from cfg, with or without
// its cache; nil draws the rank's weights of models.Llama(cfg) without
// the whole model, see models.LlamaTensorParallel),
// whose modules are q/k/v/o_proj and gate/up/down_proj, or a prefix
// adapter for it (see the package doc), on data, with the
// options of train.Trainer that apply (batch size, sequence length and
// padding, seed, steps or epochs, learning rate and schedule, AdamW,
// clipping, LoRA+ scale, gradient accumulation, session options); the
// task is the causal LM's.
func New(cfg models.LlamaConfig, full *graph.Model, lora *adapter.Adapter, data *train.Dataset, comm train.Collective, opts train.Options) (*Trainer, error) {
	return NewWithDataParallel(cfg, full, lora, data, comm, nil, opts)
}

// NewWithDataParallel is New for a rank that also belongs to dp, the
// data-parallel group of the ranks that hold the same share of the model
// in other tensor-parallel groups (DP × TP ranks in all): each data-parallel
// rank trains on its shard of every batch of opts.BatchSize × dp.Size()
// examples (train.Loader.Shard), its gradients weighted by its shard's
// share of the batch's scored tokens and summed over dp before clipping,
// as train.Trainer does with a Collective. dp nil is New.
func NewWithDataParallel(cfg models.LlamaConfig, full *graph.Model, lora *adapter.Adapter, data *train.Dataset, comm, dp train.Collective, opts train.Options) (*Trainer, error) {
	if opts.GradAccum < 0 {
		return nil, fmt.Errorf("tensorparallel: gradient accumulation %d: want > 0", opts.GradAccum)
	}
	if opts.KeepCheckpoints < 0 {
		return nil, fmt.Errorf("tensorparallel: keep %d checkpoints: want >= 0 (0 means 1)", opts.KeepCheckpoints)
	}
	// train.Trainer's defaults, which a checkpoint records.
	opts.GradAccum = max(1, opts.GradAccum)
	opts.KeepCheckpoints = max(1, opts.KeepCheckpoints)
	opts.Schedule = cmp.Or(opts.Schedule, string(train.Linear))
	if opts.Task != "" && opts.Task != train.CausalLM {
		return nil, fmt.Errorf("tensorparallel: task %s: only the causal LM loss is supported", opts.Task)
	}
	rank, degree := comm.Rank(), comm.Size()
	shards, err := adapter.SplitTensorParallel(lora, degree)
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: %w", err)
	}
	// The attention pieces of a prefix run take its keys and values as
	// their past.
	pcfg := cfg
	pcfg.NoCache = lora.Prefix == nil
	pieces, err := models.LlamaTensorParallel(pcfg, full, rank, degree)
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: %w", err)
	}
	t := &Trainer{comm: comm, dp: dp, cfg: cfg, opts: opts, lora: shards[rank], start: pieces.VocabStart, ids: pieces.VocabIDs, width: pieces.VocabWidth,
		shapes: map[string][]int64{}, examples: len(data.Examples)}
	factors, wrt := t.lora, []string(nil)
	if lora.Prefix != nil {
		if t.prefix, err = newPrefixShare(t.lora, len(pieces.Blocks)/2, degree); err != nil {
			return nil, err
		}
		t.names = []string{rewrite.PromptEmbeddingsName}
		t.shapes[rewrite.PromptEmbeddingsName] = lora.Prompt.Shape
		factors, wrt = nil, []string{pastKeyName, pastValueName}
	}
	for _, m := range lora.Modules() {
		w := lora.Weights[m]
		t.names = append(t.names, m+loraA, m+loraB)
		t.shapes[m+loraA], t.shapes[m+loraB] = w.A.Shape, w.B.Shape
	}
	scaleB := opts.LoRAPlusScale
	if t.embed, err = newPiece("embedding", pieces.Embed, factors, rank, "partial", false, nil, scaleB, opts.Session); err != nil {
		return nil, err
	}
	for i, b := range pieces.Blocks {
		kind, past := "attention", wrt
		if i%2 == 1 {
			kind, past = "MLP", nil
		}
		p, err := newPiece(fmt.Sprintf("layer %d %s", i/2, kind), b, factors, rank, "partial", true, past, scaleB, opts.Session)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.blocks = append(t.blocks, p)
	}
	if t.head, err = newPiece("head", pieces.Head, factors, rank, "logits", true, nil, scaleB, opts.Session); err != nil {
		t.Close()
		return nil, err
	}
	if t.prefix != nil {
		for _, prm := range t.prefix.layers {
			t.params, t.split, t.group = append(t.params, prm), append(t.split, true), append(t.group, 0)
		}
	}
	for _, p := range append(append([]*piece{t.embed}, t.blocks...), t.head) {
		for _, prm := range p.params {
			module, isA := moduleOf(prm.Name)
			s, err := adapter.TensorParallelSplit(module)
			if err != nil {
				t.Close()
				return nil, fmt.Errorf("tensorparallel: %w", err)
			}
			t.group = append(t.group, len(t.params))
			t.params = append(t.params, prm)
			t.split = append(t.split, (s == adapter.ColumnParallel) != isA)
		}
	}
	if t.prefix == nil && len(t.params) != 2*len(lora.Weights) {
		t.Close()
		return nil, fmt.Errorf("tensorparallel: %d of the adapter's %d modules are in the model", len(t.params)/2, len(lora.Weights))
	}
	if t.loader, err = train.NewLoader(data, train.LoaderOptions{BatchSize: opts.BatchSize * t.dpSize(), SeqLen: opts.SeqLen, PadID: opts.PadID, PadToSeqLen: opts.PadToSeqLen, Shuffle: true, Seed: opts.Seed}); err != nil {
		t.Close()
		return nil, err
	}
	t.total = opts.TotalSteps(t.loader.NumBatches())
	if t.sched, err = train.NewSchedule(opts.Schedule, opts.LR, opts.Warmup, t.total); err != nil {
		t.Close()
		return nil, err
	}
	if t.opt, err = train.NewAdamW(opts.AdamW); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// dpSize returns the number of data-parallel ranks (1 without).
func (t *Trainer) dpSize() int {
	if t.dp == nil {
		return 1
	}
	return t.dp.Size()
}

// dpRank returns this rank's rank in its data-parallel group (0 without).
func (t *Trainer) dpRank() int {
	if t.dp == nil {
		return 0
	}
	return t.dp.Rank()
}

// Close releases the sessions. Closing twice is safe.
func (t *Trainer) Close() {
	for _, p := range append(append([]*piece{t.embed}, t.blocks...), t.head) {
		p.close()
	}
	t.embed, t.blocks, t.head = nil, nil, nil
}

// Step returns the number of optimizer steps taken; TotalSteps those of
// the run.
func (t *Trainer) Step() int { return t.step }

// History returns the log of the run, as train.Trainer.History does: a
// record per step and per Evaluate, in order, those of a resumed run's
// checkpoint first. The slice is the trainer's; do not change it.
func (t *Trainer) History() []train.LogRecord { return t.history }

// epochAt is the epoch at the end of step: the micro-batches taken so far
// over those of one pass through the data.
func (t *Trainer) epochAt(step int) float64 {
	return float64(step*t.opts.GradAccum) / float64(t.loader.NumBatches())
}
func (t *Trainer) TotalSteps() int { return t.total }

// AllReducedValues returns how many values (float32 activations and
// gradients, float64 loss terms) the last step all-reduced on this rank.
func (t *Trainer) AllReducedValues() int { return t.reduced }

// Adapter returns this rank's shard of the trained adapter;
// adapter.MergeTensorParallel of every rank's, in rank order, is the whole
// adapter.
func (t *Trainer) Adapter() *adapter.Adapter {
	if t.prefix != nil {
		return t.prefixShard(func(l *train.Param) []float32 { return l.Data })
	}
	out := adapter.NewLoRA(*t.lora.LoRA)
	for _, p := range t.params {
		module, isA := moduleOf(p.Name)
		w := out.Weights[module]
		old := t.lora.Weights[module]
		if isA {
			w.A = &adapter.Tensor{DType: old.A.DType, Shape: old.A.Shape, Data: append([]float32(nil), p.Data...)}
		} else {
			w.B = &adapter.Tensor{DType: old.B.DType, Shape: old.B.Shape, Data: append([]float32(nil), p.Data...)}
		}
		out.Weights[module] = w
	}
	return out
}

// SaveShard writes this rank's shard of the trained adapter into dir as
// PaddleNLP does without merging (adapter.SavePaddleShard:
// lora_model_state.tp<rank>.pdparams, and on rank 0 lora_config.json);
// adapter.LoadPaddleShards reads the whole adapter once every rank has
// saved. A prefix run has no such files (adapter.SavePaddleShard writes
// LoRA shards only): merge its Adapter shards, or write a checkpoint.
func (t *Trainer) SaveShard(dir string) error {
	return adapter.SavePaddleShard(dir, t.Adapter(), t.comm.Rank())
}

// allReduce sums buf over the ranks.
func (t *Trainer) allReduce(buf []float32) error {
	t.reduced += len(buf)
	if err := t.comm.AllReduceSumFloat32(buf); err != nil {
		return fmt.Errorf("tensorparallel: %w", err)
	}
	return nil
}

// Logits returns this rank's run of the vocabulary's logits of b, [rows,
// seq, ⌈vocab/degree⌉] (columns past the vocabulary's end are padding),
// with the current factors.
func (t *Trainer) Logits(b train.Batch) ([]float32, error) {
	logits, _, _, err := t.forward(b)
	return logits, err
}

// forward runs b through the pieces and returns this rank's logits, the
// input of each block and of the head, and the feeds of the mask and
// positions.
func (t *Trainer) forward(b train.Batch) ([]float32, [][]float32, map[string]*rt.Tensor, error) {
	shape := []int64{int64(b.Size), int64(b.SeqLen)}
	hshape := []int64{int64(b.Size), int64(b.SeqLen), int64(t.cfg.Hidden)}
	ids, err := rt.NewInt64(shape, b.InputIDs)
	if err != nil {
		return nil, nil, nil, err
	}
	hidden, err := t.embed.forward(map[string]*rt.Tensor{"input_ids": ids})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := t.allReduce(hidden); err != nil {
		return nil, nil, nil, err
	}
	maskShape, maskIDs, posIDs := shape, b.AttentionMask, b.PositionIDs()
	if t.prefix != nil {
		maskIDs, posIDs = prefixContext(b, t.prefix.tokens)
		maskShape = []int64{int64(b.Size), int64(t.prefix.tokens + b.SeqLen)}
	}
	mask, err := rt.NewInt64(maskShape, maskIDs)
	if err != nil {
		return nil, nil, nil, err
	}
	pos, err := rt.NewInt64(shape, posIDs)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx := map[string]*rt.Tensor{"attention_mask": mask, "position_ids": pos}
	inputs := make([][]float32, 0, len(t.blocks)+1)
	for i, p := range t.blocks {
		inputs = append(inputs, hidden)
		in, err := t.blockFeeds(i, b, hidden, hshape, ctx)
		if err != nil {
			return nil, nil, nil, err
		}
		part, err := p.forward(in)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := t.allReduce(part); err != nil {
			return nil, nil, nil, err
		}
		next := make([]float32, len(hidden))
		for j := range next {
			next[j] = hidden[j] + part[j]
		}
		hidden = next
	}
	inputs = append(inputs, hidden)
	h, err := rt.NewFloat32(hshape, hidden)
	if err != nil {
		return nil, nil, nil, err
	}
	logits, err := t.head.forward(map[string]*rt.Tensor{hiddenName: h})
	return logits, inputs, ctx, err
}

// blockFeeds returns the feeds of block i on hidden: the attention blocks
// (even i) read the mask and positions too.
func (t *Trainer) blockFeeds(i int, b train.Batch, hidden []float32, hshape []int64, ctx map[string]*rt.Tensor) (map[string]*rt.Tensor, error) {
	h, err := rt.NewFloat32(hshape, hidden)
	if err != nil {
		return nil, err
	}
	in := map[string]*rt.Tensor{hiddenName: h}
	if err := t.blocks[i].dropoutFeeds(in, b); err != nil {
		return nil, err
	}
	if i%2 == 0 {
		for k, v := range ctx {
			in[k] = v
		}
		if t.prefix != nil {
			if err := t.prefix.past(in, i/2, b.Size); err != nil {
				return nil, err
			}
		}
	}
	return in, nil
}

// TrainStep runs one optimizer step on the next GradAccum batches: each
// forward through the pieces, the loss across the vocabulary shards and
// backward; then the factors' gradients summed where they are replicated,
// clipping by the global norm, and AdamW. It returns the step's loss,
// the gradient norm before clipping and the learning rate.
func (t *Trainer) TrainStep() (train.StepResult, error) {
	t.reduced = 0
	step := t.step + 1
	accum := t.opts.GradAccum
	nb := t.loader.NumBatches()
	// Each micro-batch's loss is divided by what the whole step scores,
	// so that the accumulated gradient is that of the step's mean loss,
	// as train.Trainer weights its micro-batches.
	scored, fed := 0, 0
	for i := range accum {
		micro := t.step*accum + i
		b := t.loader.Batch(micro/nb, micro%nb)
		scored += causalScored(b)
		fed += b.InputTokens()
	}
	train.ZeroGrad(t.params)
	var loss float64
	for i := range accum {
		micro := t.step*accum + i
		b, own := t.loader.Batch(micro/nb, micro%nb), true
		if t.dp != nil {
			b, own = t.loader.Shard(micro/nb, micro%nb, t.dp.Rank(), t.dp.Size())
		}
		if !own {
			continue
		}
		// The LoRA dropout's draws: those of one process that trains
		// on the whole batch, of which this rank holds the rows from
		// FirstRow.
		b.Dropout = &train.DropoutDraws{Seed: t.opts.Seed, Micro: micro, FirstRow: t.dpRank() * t.opts.BatchSize}
		l, err := t.forwardBackward(b, max(1, scored))
		if err != nil {
			return train.StepResult{}, fmt.Errorf("tensorparallel: step %d: %w", step, err)
		}
		loss += l
	}
	// The replicated factors' gradients, summed over the tensor-parallel
	// ranks once for all the micro-batches.
	for i, p := range t.params {
		if !t.split[i] {
			if err := t.allReduce(p.Grad); err != nil {
				return train.StepResult{}, fmt.Errorf("tensorparallel: step %d: %w", step, err)
			}
		}
	}
	if t.dp != nil {
		var err error
		if loss, err = t.sumOverDP(loss); err != nil {
			return train.StepResult{}, err
		}
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return train.StepResult{}, fmt.Errorf("tensorparallel: step %d: loss is %v", step, loss)
	}
	norm, err := t.clip()
	if err != nil {
		return train.StepResult{}, err
	}
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return train.StepResult{}, fmt.Errorf("tensorparallel: step %d: gradient norm is %v", step, norm)
	}
	lr := t.sched.LR(t.step)
	if err := t.opt.Step(lr, t.params); err != nil {
		return train.StepResult{}, fmt.Errorf("tensorparallel: step %d: %w", step, err)
	}
	t.step = step
	t.history = append(t.history, train.LogRecord{Step: step, Loss: &loss, LR: &lr, GradNorm: &norm,
		Epoch: t.epochAt(step), Tokens: scored})
	return train.StepResult{Step: step, Total: t.total, Loss: loss, GradNorm: norm, LR: lr, Tokens: scored, InputTokens: fed}, nil
}

// forwardBackward runs b forward and backward, adds this rank's part of
// the factors' gradients (the replicated ones not yet summed over the
// tensor-parallel ranks) to their Grad, and returns b's part of the loss:
// its cross entropy summed over its scored positions, divided by scored,
// those of the whole step.
func (t *Trainer) forwardBackward(b train.Batch, scored int) (float64, error) {
	logits, inputs, ctx, err := t.forward(b)
	if err != nil {
		return 0, err
	}
	per := t.width
	loss, gradLogits, local, err := vocabLoss(t.comm, logits, b.Labels, b.Size, b.SeqLen, per, t.ids, t.start, scored)
	if err != nil {
		return 0, err
	}
	t.reduced += (t.comm.Size() + 2) * local
	hshape := []int64{int64(b.Size), int64(b.SeqLen), int64(t.cfg.Hidden)}
	g, err := rt.NewFloat32([]int64{int64(b.Size), int64(b.SeqLen), int64(per)}, gradLogits)
	if err != nil {
		return 0, err
	}
	h, err := rt.NewFloat32(hshape, inputs[len(t.blocks)])
	if err != nil {
		return 0, err
	}
	grad, err := t.head.backward(map[string]*rt.Tensor{hiddenName: h}, g, nil)
	if err != nil {
		return 0, err
	}
	if err := t.allReduce(grad); err != nil {
		return 0, err
	}
	// Each block adds its output to the residual stream, so the
	// gradient of its input is the stream's plus the block's own, summed
	// over the ranks.
	for i := len(t.blocks) - 1; i >= 0; i-- {
		in, err := t.blockFeeds(i, b, inputs[i], hshape, ctx)
		if err != nil {
			return 0, err
		}
		gt, err := rt.NewFloat32(hshape, grad)
		if err != nil {
			return 0, err
		}
		var past map[string][]float32
		if t.prefix != nil && i%2 == 0 {
			past = map[string][]float32{}
		}
		part, err := t.blocks[i].backward(in, gt, past)
		if err != nil {
			return 0, err
		}
		if past != nil {
			t.prefix.addGrad(i/2, b.Size, past)
		}
		if err := t.allReduce(part); err != nil {
			return 0, err
		}
		next := make([]float32, len(grad))
		for j := range next {
			next[j] = grad[j] + part[j]
		}
		grad = next
	}
	return loss, nil
}

// sumOverDP sums every factor's gradient and the loss over the
// data-parallel group, and returns the step's loss.
func (t *Trainer) sumOverDP(loss float64) (float64, error) {
	var flat []float32
	for _, p := range t.params {
		flat = append(flat, p.Grad...)
	}
	t.reduced += len(flat) + 1
	if err := t.dp.AllReduceSumFloat32(flat); err != nil {
		return 0, fmt.Errorf("tensorparallel: data parallel: %w", err)
	}
	for _, p := range t.params {
		n := copy(p.Grad, flat)
		flat = flat[n:]
	}
	l := []float64{loss}
	if err := t.dp.AllReduceSumFloat64(l); err != nil {
		return 0, fmt.Errorf("tensorparallel: data parallel: %w", err)
	}
	return l[0], nil
}

// causalScored counts the positions of b that the causal LM loss scores:
// those whose next label is not train.IgnoreIndex.
func causalScored(b train.Batch) int {
	n := 0
	for r := range b.Size {
		for t := 1; t < b.SeqLen; t++ {
			if b.Labels[r*b.SeqLen+t] != train.IgnoreIndex {
				n++
			}
		}
	}
	return n
}

// clip measures the global norm of the step's gradients as
// train.GradNorm does over the whole adapter (each factor's norm rounded
// to float32, a split one's over every rank's part), clips as
// train.ClipGradNorm does, and returns the norm before clipping.
func (t *Trainer) clip() (float64, error) {
	sq := make([]float64, len(t.params))
	for i, p := range t.params {
		if !t.split[i] && t.comm.Rank() != 0 {
			continue // rank 0 counts a replicated factor once for all
		}
		for _, v := range p.Grad {
			sq[t.group[i]] += float64(v) * float64(v)
		}
	}
	t.reduced += len(sq)
	if err := t.comm.AllReduceSumFloat64(sq); err != nil {
		return 0, fmt.Errorf("tensorparallel: %w", err)
	}
	var total float64
	for _, s := range sq {
		n := float64(float32(math.Sqrt(s)))
		total += n * n
	}
	norm := float64(float32(math.Sqrt(total)))
	if t.opts.Clip > 0 && !math.IsNaN(norm) && !math.IsInf(norm, 0) {
		coef := float32(t.opts.Clip) / (float32(norm) + 1e-6)
		if coef < 1 {
			for _, p := range t.params {
				for j := range p.Grad {
					p.Grad[j] *= coef
				}
			}
		}
	}
	return norm, nil
}
