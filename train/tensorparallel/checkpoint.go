package tensorparallel

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train"
)

// paramsLayer names the factors' values among what a rank sends rank 0
// for a checkpoint; the optimizer's slots (exp_avg, exp_avg_sq) are the
// other layers, each holding one value per factor value.
const paramsLayer = "params"

// leader reports whether this rank is rank 0 of the whole run: rank 0 of
// its tensor-parallel group, in data-parallel group 0.
func (t *Trainer) leader() bool {
	return t.comm.Rank() == 0 && (t.dp == nil || t.dp.Rank() == 0)
}

// share returns, on every rank of the run, what the leader passed as data
// and err (train.ShareBytes): first over the data-parallel group of the
// tensor-parallel ranks 0, then over each tensor-parallel group.
func (t *Trainer) share(what string, data []byte, err error) ([]byte, error) {
	if t.dp != nil && t.comm.Rank() == 0 {
		data, err = train.ShareBytes(t.dp, what, data, err)
	}
	return train.ShareBytes(t.comm, what, data, err)
}

// SaveCheckpoint writes a checkpoint of the run to dir/checkpoint-<step>
// in train.Trainer's format (train.WriteCheckpoint), and returns that
// path: the whole adapter's factors and AdamW moments, gathered from the
// ranks' shards (adapter.MergeTensorParallel), the step, the data
// position and the log. Every rank calls it; rank 0 of the run alone
// writes, and every rank returns its path or its error. Older
// checkpoints beyond Options.KeepCheckpoints are removed afterwards.
//
// A train.Trainer on the whole model whose parameters are Names, in that
// order, resumes from it as from its own, and so does a tensor-parallel
// run of any degree (LoadCheckpoint).
func (t *Trainer) SaveCheckpoint(dir string) (string, error) {
	if t.head == nil {
		return "", fmt.Errorf("tensorparallel: checkpoint: trainer is closed")
	}
	var path string
	var err error
	// Every data-parallel group holds the same factors: the leader's
	// tensor-parallel group alone gathers them.
	if t.dp == nil || t.dp.Rank() == 0 {
		var c *train.Checkpoint
		c, err = t.gather()
		if err == nil && t.leader() {
			path, err = train.WriteCheckpoint(dir, c, t.opts.KeepCheckpoints)
		}
	}
	b, serr := t.share("checkpoint "+dir, []byte(path), err)
	if err != nil {
		return "", err // this rank's own failure, which the leader may not share
	}
	return string(b), serr
}

// gather returns, on rank 0 of the tensor-parallel group, the checkpoint
// of the run with the whole adapter's factors and moments; the other
// ranks send their shards and get nil.
func (t *Trainer) gather() (*train.Checkpoint, error) {
	state := t.opt.State()
	tensors := map[string]*adapter.Tensor{}
	for _, p := range t.params {
		tensors[paramsLayer+"/"+p.Name] = adapter.NewTensor(p.Shape, p.Data)
		for slot, per := range state.Slots {
			if v, ok := per[p.Name]; ok {
				tensors[slot+"/"+p.Name] = adapter.NewTensor(p.Shape, v)
			}
		}
	}
	b, err := adapter.EncodeSafetensors(tensors, nil)
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: checkpoint: %w", err)
	}
	all, err := gatherBytes(t.comm, b)
	if err != nil || t.comm.Rank() != 0 {
		return nil, err
	}
	// layers[layer][rank] is that rank's share of the layer.
	layers := map[string][]map[string]*adapter.Tensor{}
	for r, b := range all {
		ts, _, err := adapter.DecodeSafetensors(b)
		if err != nil {
			return nil, fmt.Errorf("tensorparallel: checkpoint: rank %d's shard: %w", r, err)
		}
		for key, v := range ts {
			layer, name, _ := strings.Cut(key, "/")
			if layers[layer] == nil {
				layers[layer] = make([]map[string]*adapter.Tensor, len(all))
			}
			if layers[layer][r] == nil {
				layers[layer][r] = map[string]*adapter.Tensor{}
			}
			layers[layer][r][name] = v
		}
	}
	c := &train.Checkpoint{
		Step: t.step, TotalSteps: t.total, Seed: t.opts.Seed,
		BatchSize: t.loader.Options().BatchSize, GradAccum: t.opts.GradAccum, SeqLen: t.opts.SeqLen,
		NumExamples: t.examples, NumBatches: t.loader.NumBatches(),
		Names: t.names, History: t.history, Options: t.opts,
		Optim: &train.OptimizerState{Kind: state.Kind, Step: state.Step, Hyper: state.Hyper, Slots: map[string]map[string][]float32{}},
	}
	for layer, shares := range layers {
		whole, err := t.mergeLayer(layer, shares)
		if err != nil {
			return nil, err
		}
		if layer == paramsLayer {
			c.Params = whole
			continue
		}
		per := map[string][]float32{}
		for name, v := range whole {
			per[name] = v.Data
		}
		c.Optim.Slots[layer] = per
	}
	if c.Params == nil {
		return nil, fmt.Errorf("tensorparallel: checkpoint: no factors gathered")
	}
	return c, nil
}

// mergeLayer merges the ranks' shares of a layer, each a parameter
// name's values on that rank, into the whole adapter's, as
// adapter.MergeTensorParallel merges the factors or the prefix table.
func (t *Trainer) mergeLayer(layer string, shares []map[string]*adapter.Tensor) (map[string]*adapter.Tensor, error) {
	shards := make([]*adapter.Adapter, len(shares))
	for r, share := range shares {
		for _, p := range t.params {
			if share[p.Name] == nil {
				return nil, fmt.Errorf("tensorparallel: checkpoint: rank %d sent no %s of %s", r, layer, p.Name)
			}
		}
		shards[r] = t.shardAdapter(share)
	}
	merged, err := adapter.MergeTensorParallel(shards)
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: checkpoint: %s: %w", layer, err)
	}
	return wholeValues(merged), nil
}

// shardAdapter returns values, a rank's values of each of t.params, as
// that rank's shard of an adapter of t's kind.
func (t *Trainer) shardAdapter(values map[string]*adapter.Tensor) *adapter.Adapter {
	if t.prefix != nil {
		return t.prefixShard(func(l *train.Param) []float32 { return values[l.Name].Data })
	}
	a := adapter.NewLoRA(*t.lora.LoRA)
	for _, p := range t.params {
		module, isA := moduleOf(p.Name)
		w := a.Weights[module]
		if isA {
			w.A = values[p.Name]
		} else {
			w.B = values[p.Name]
		}
		a.Weights[module] = w
	}
	return a
}

// shardValues is the inverse of shardAdapter: a's values of each of
// t.params.
func (t *Trainer) shardValues(a *adapter.Adapter) (map[string]*adapter.Tensor, error) {
	out := map[string]*adapter.Tensor{}
	if t.prefix != nil {
		s, err := newPrefixShare(a, len(t.prefix.layers), t.comm.Size())
		if err != nil {
			return nil, err
		}
		for _, l := range s.layers {
			out[l.Name] = adapter.NewTensor(l.Shape, l.Data)
		}
		return out, nil
	}
	for m, w := range a.Weights {
		out[m+loraA], out[m+loraB] = w.A, w.B
	}
	return out, nil
}

// wholeValues returns the tensors of a whole adapter by parameter name:
// its factors, or its prompt table.
func wholeValues(a *adapter.Adapter) map[string]*adapter.Tensor {
	out := map[string]*adapter.Tensor{}
	if a.Prefix != nil {
		out[rewrite.PromptEmbeddingsName] = a.Prompt
		return out
	}
	for m, w := range a.Weights {
		out[m+loraA], out[m+loraB] = w.A, w.B
	}
	return out
}

// Suffixes of the factors' names.
const (
	loraA = ".lora_A.weight"
	loraB = ".lora_B.weight"
)

// moduleOf returns the module of the factor called name, and whether the
// factor is its lora_A.
func moduleOf(name string) (string, bool) {
	if m, ok := strings.CutSuffix(name, loraA); ok {
		return m, true
	}
	return strings.TrimSuffix(name, loraB), false
}

// gatherBytes returns every rank's data, in rank order, on every rank of
// c: the lengths all-reduced, then each rank's data broadcast.
func gatherBytes(c train.Collective, data []byte) ([][]byte, error) {
	lens := make([]float64, c.Size())
	lens[c.Rank()] = float64(len(data))
	if err := c.AllReduceSumFloat64(lens); err != nil {
		return nil, fmt.Errorf("tensorparallel: checkpoint: %w", err)
	}
	out := make([][]byte, c.Size())
	for r := range out {
		buf := data
		if r != c.Rank() {
			buf = make([]byte, int(lens[r]))
		}
		if err := c.BroadcastBytes(buf, r); err != nil {
			return nil, fmt.Errorf("tensorparallel: checkpoint: %w", err)
		}
		out[r] = buf
	}
	return out, nil
}

// Resume loads the newest checkpoint in dir, if there is one, and reports
// whether it did. Every rank calls it; rank 0 of the run alone reads dir
// (see LoadCheckpoint).
func (t *Trainer) Resume(dir string) (bool, error) {
	p, err := t.checkpoints().Latest(dir)
	if err != nil || p == "" {
		return false, err
	}
	return true, t.LoadCheckpoint(p)
}

// checkpoints reads checkpoints over all the run's ranks.
func (t *Trainer) checkpoints() train.CheckpointSource {
	return train.CheckpointSource{Leader: t.leader(), Share: t.share}
}

// LoadCheckpoint restores the checkpoint at path (SaveCheckpoint's, or
// train.Trainer's of the same run) on every rank: rank 0 of the run reads
// its files and sends them to every other rank, which need no access to
// path, and each rank takes its shard of the whole adapter's factors and
// moments (adapter.SplitTensorParallel). The run must be the same one,
// as train.Trainer.LoadCheckpoint checks: the same factors, dataset size,
// batch size (of all data-parallel ranks together), gradient
// accumulation, sequence length, seed and optimizer settings. The
// tensor-parallel degree may differ from the saving run's.
func (t *Trainer) LoadCheckpoint(path string) error {
	if t.head == nil {
		return fmt.Errorf("tensorparallel: checkpoint: trainer is closed")
	}
	c, err := train.ReadCheckpoint(path, t.checkpoints().Files(path), &train.Checkpoint{
		TotalSteps: t.total, Seed: t.opts.Seed, BatchSize: t.loader.Options().BatchSize,
		GradAccum: t.opts.GradAccum, SeqLen: t.opts.SeqLen, NumExamples: t.examples,
		Names: t.names, Options: t.opts,
	}, t.shapes)
	if err != nil {
		return fmt.Errorf("tensorparallel: %w", err)
	}
	if c.Optim.Kind != "adamw" {
		return fmt.Errorf("tensorparallel: checkpoint %s: optimizer %q: want adamw", path, c.Optim.Kind)
	}
	params, err := t.splitLayer(path, paramsLayer, c.Params)
	if err != nil {
		return err
	}
	state := &train.OptimizerState{Kind: c.Optim.Kind, Step: c.Optim.Step, Hyper: c.Optim.Hyper, Slots: map[string]map[string][]float32{}}
	for slot, per := range c.Optim.Slots {
		whole := map[string]*adapter.Tensor{}
		for name, v := range per {
			shape := t.shapes[name]
			if shape == nil || int64(len(v)) != graph.NumElements(shape) {
				return fmt.Errorf("tensorparallel: checkpoint %s: optimizer %s of %q has %d values, not those of a factor of shape %v", path, slot, name, len(v), shape)
			}
			whole[name] = adapter.NewTensor(shape, v)
		}
		mine, err := t.splitLayer(path, slot, whole)
		if err != nil {
			return err
		}
		state.Slots[slot] = map[string][]float32{}
		for name, v := range mine {
			state.Slots[slot][name] = v.Data
		}
	}
	if err := t.opt.SetState(state); err != nil {
		return fmt.Errorf("tensorparallel: checkpoint %s: %w", path, err)
	}
	for _, p := range t.params {
		copy(p.Data, params[p.Name].Data)
		clear(p.Grad)
	}
	t.step, t.history = c.Step, c.History
	return nil
}

// splitLayer returns this rank's share of a layer of the checkpoint at
// path, whole, the whole adapter's values of each parameter name, as
// adapter.SplitTensorParallel splits the factors or the prefix table.
func (t *Trainer) splitLayer(path, layer string, whole map[string]*adapter.Tensor) (map[string]*adapter.Tensor, error) {
	for _, name := range t.names {
		if whole[name] == nil {
			return nil, fmt.Errorf("tensorparallel: checkpoint %s: no %s of %q", path, layer, name)
		}
	}
	if len(whole) != len(t.names) {
		return nil, fmt.Errorf("tensorparallel: checkpoint %s: %s holds %d tensors, the adapter %d", path, layer, len(whole), len(t.names))
	}
	var a *adapter.Adapter
	if t.prefix != nil {
		cfg := *t.lora.Prefix
		cfg.TensorParallelDegree = -1
		a = adapter.NewPrefix(cfg)
		a.Prompt = whole[rewrite.PromptEmbeddingsName]
	} else {
		cfg := *t.lora.LoRA
		cfg.TensorParallelDegree = -1
		a = adapter.NewLoRA(cfg)
		for _, name := range t.names {
			module, isA := moduleOf(name)
			w := a.Weights[module]
			if isA {
				w.A = whole[name]
			} else {
				w.B = whole[name]
			}
			a.Weights[module] = w
		}
	}
	shards, err := adapter.SplitTensorParallel(a, t.comm.Size())
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: checkpoint %s: %s: %w", path, layer, err)
	}
	out, err := t.shardValues(shards[t.comm.Rank()])
	if err != nil {
		return nil, fmt.Errorf("tensorparallel: checkpoint %s: %s: %w", path, layer, err)
	}
	return out, nil
}
