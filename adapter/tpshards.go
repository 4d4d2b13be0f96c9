package adapter

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// This file writes and reads PaddleNLP's tensor-parallel LoRA shards, as
// LoRAModel.save_pretrained(merge_tensor_parallel=False) leaves them:
// lora_config.json with tensor_parallel_degree N, and one state dict per
// tensor-parallel rank, lora_model_state.tp00.pdparams … tp<N-1>.

// TPSplit says how tensor parallelism divides the LoRA factors of a
// module among the ranks, after the Megatron-style split of its linear
// layer.
type TPSplit int

const (
	// ColumnParallel modules split their linear by output (q_proj, k_proj,
	// v_proj, gate_proj, up_proj): PaddleNLP's ColumnParallelLoRALinear
	// splits lora_B [r, out] by output and replicates lora_A.
	ColumnParallel TPSplit = iota + 1
	// RowParallel modules split their linear by input (o_proj,
	// down_proj): PaddleNLP's RowParallelLoRALinear splits lora_A [in, r]
	// by input and replicates lora_B.
	RowParallel
)

// String returns "column-parallel" or "row-parallel".
func (s TPSplit) String() string {
	switch s {
	case ColumnParallel:
		return "column-parallel"
	case RowParallel:
		return "row-parallel"
	}
	return fmt.Sprintf("TPSplit(%d)", int(s))
}

// tpSplits maps the last part of a module name to its split, as
// PaddleNLP's LLaMA-style models lay out their ColumnParallelLinear and
// RowParallelLinear layers.
var tpSplits = map[string]TPSplit{
	"q_proj": ColumnParallel, "k_proj": ColumnParallel, "v_proj": ColumnParallel,
	"gate_proj": ColumnParallel, "up_proj": ColumnParallel,
	"o_proj": RowParallel, "down_proj": RowParallel,
}

// TensorParallelSplit returns how tensor parallelism splits the LoRA
// factors of module, from the last part of its name; a module that is
// neither column- nor row-parallel in PaddleNLP's LLaMA-style layout is an
// error.
func TensorParallelSplit(module string) (TPSplit, error) {
	last := module[strings.LastIndex(module, ".")+1:]
	if s, ok := tpSplits[last]; ok {
		return s, nil
	}
	return 0, errorf("module %q has no tensor-parallel layout: PaddleNLP splits q_proj, k_proj, v_proj, gate_proj and up_proj by output and o_proj and down_proj by input", module)
}

// PaddleShardFile returns the name of tensor-parallel rank rank's state
// dict: lora_model_state.tp00.pdparams for rank 0.
func PaddleShardFile(rank int) string {
	return fmt.Sprintf("%s.tp%02d.pdparams", strings.TrimSuffix(PaddleLoRAWeightsFile, ".pdparams"), rank)
}

// SplitTensorParallel returns the LoRA adapter a as the degree adapters
// that tensor-parallel ranks 0 … degree-1 hold (TensorParallelSplit: a
// column-parallel module's lora_B is split into degree runs of its
// outputs, a row-parallel one's lora_A into runs of its inputs, and the
// other factor is every rank's whole). Each shard's config says
// tensor_parallel_degree degree. Fused projections (enable_lora) and extra
// tensors have no shard layout here and are refused, as are modules
// TensorParallelSplit does not know and dimensions that degree does not
// divide. MergeTensorParallel undoes it, bit for bit.
func SplitTensorParallel(a *Adapter, degree int) ([]*Adapter, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	switch {
	case degree < 2:
		return nil, errorf("tensor-parallel shards: degree %d: want 2 or more", degree)
	case a.Prefix != nil:
		return splitPrefix(a, degree)
	case a.LoRA == nil:
		return nil, errorf("tensor-parallel shards: only LoRA and prefix adapters are sharded here")
	case !a.LoRA.EnableLoRAList.IsZero():
		return nil, errorf("tensor-parallel shards: fused projections (enable_lora) have no shard layout here")
	case a.LoRA.UseDoRA:
		return nil, errorf("tensor-parallel shards: PaddleNLP has no DoRA, so a DoRA adapter (use_dora) has no shard layout")
	case len(a.Extra) > 0:
		return nil, errorf("tensor-parallel shards: extra tensor %q (trainable_bias, trainable_modules) has no shard layout here", sortedKeys(a.Extra)[0])
	}
	cfg := *a.LoRA
	cfg.TensorParallelDegree = degree
	shards := make([]*Adapter, degree)
	for k := range shards {
		shards[k] = NewLoRA(cfg)
	}
	for _, m := range a.Modules() {
		split, err := TensorParallelSplit(m)
		if err != nil {
			return nil, err
		}
		w := a.Weights[m]
		as, bs := replicate(w.A, degree), replicate(w.B, degree)
		if split == ColumnParallel {
			bs, err = splitColumns(w.B, degree)
		} else {
			as, err = splitRows(w.A, degree)
		}
		if err != nil {
			return nil, formatErrorf("", m, "%s: %w", split, err)
		}
		for k, s := range shards {
			s.Weights[m] = LoRAWeights{A: as[k], B: bs[k]}
		}
	}
	return shards, nil
}

// SavePaddleShards writes the LoRA adapter a into dir as degree
// tensor-parallel shards (SplitTensorParallel), as PaddleNLP saves without
// merging: lora_config.json with tensor_parallel_degree degree, and
// PaddleShardFile(k) for each rank k. Every file is written in full
// before any is renamed into place. LoadPaddleShards merges the shards
// back, bit for bit.
func SavePaddleShards(dir string, a *Adapter, degree int) error {
	if a.LoRA == nil {
		return errorf("tensor-parallel shards: only LoRA adapters are sharded into PaddleNLP's files here")
	}
	shards, err := SplitTensorParallel(a, degree)
	if err != nil {
		return err
	}
	if fileExists(filepath.Join(dir, HFConfigFile)) {
		return errorf("%s holds %s, which LoadDir reads before PaddleNLP's files: save the shards into another directory", dir, HFConfigFile)
	}
	if stale, err := foreignShards(dir, degree); err != nil || len(stale) > 0 {
		if err != nil {
			return err
		}
		return errorf("%s holds %s of another save: save the shards into an empty directory", dir, strings.Join(stale, ", "))
	}
	files := map[string][]byte{}
	for k, s := range shards {
		if err := addShardFiles(files, dir, s, k, k == 0); err != nil {
			return err
		}
	}
	return writeFilesAtomic(dir, files)
}

// SavePaddleShard writes one tensor-parallel rank's shard (one of
// SplitTensorParallel's, or what a rank trained) into dir as
// PaddleShardFile(rank), as each rank of a PaddleNLP run saves without
// merging; rank 0 also writes lora_config.json, with the shard's
// tensor_parallel_degree. Once every rank has saved, LoadPaddleShards
// reads the whole adapter.
func SavePaddleShard(dir string, shard *Adapter, rank int) error {
	if shard.LoRA == nil || shard.LoRA.TensorParallelDegree < 2 || rank < 0 || rank >= shard.LoRA.TensorParallelDegree {
		return errorf("tensor-parallel shard: rank %d of a LoRA shard whose config says its degree (2 or more)", rank)
	}
	files := map[string][]byte{}
	if err := addShardFiles(files, dir, shard, rank, rank == 0); err != nil {
		return err
	}
	return writeFilesAtomic(dir, files)
}

// addShardFiles adds to files the state dict of rank's shard s and, with
// config, lora_config.json.
func addShardFiles(files map[string][]byte, dir string, s *Adapter, rank int, config bool) error {
	tensors := map[string]*Tensor{}
	for _, m := range s.Modules() {
		tensors[m+paddleSuffixA], tensors[m+paddleSuffixB] = s.Weights[m].A, s.Weights[m].B
	}
	b, err := EncodePdparams(tensors)
	if err != nil {
		return inFile(err, filepath.Join(dir, PaddleShardFile(rank)))
	}
	files[PaddleShardFile(rank)] = b
	if config {
		c, err := paddleLoRAConfigJSON(s.LoRA, s.LoRA.TensorParallelDegree, "")
		if err != nil {
			return err
		}
		files[PaddleLoRAConfigFile] = c
	}
	return nil
}

// LoadPaddleShards reads the tensor-parallel shards in dir (as
// SavePaddleShards or PaddleNLP writes them: lora_config.json with
// tensor_parallel_degree N and PaddleShardFile(0) … (N-1)) and returns
// the whole adapter, with tensor_parallel_degree -1: each module's split
// factor concatenated in rank order, and the replicated one, which must
// be the same on every rank.
func LoadPaddleShards(dir string) (*Adapter, error) {
	cfg, hf, cfgPath, err := loadDirConfig(dir)
	if err != nil {
		return nil, err
	}
	c, ok := cfg.(*LoRAConfig)
	switch {
	case hf || !ok:
		return nil, errorf("%s: tensor-parallel shards: %s is not PaddleNLP's %s", dir, filepath.Base(cfgPath), PaddleLoRAConfigFile)
	case c.TensorParallelDegree < 2:
		return nil, formatErrorf(cfgPath, "tensor_parallel_degree", "%d: the adapter is not sharded", c.TensorParallelDegree)
	}
	if err := cfg.validate(); err != nil {
		return nil, formatErrorf(cfgPath, "", "%s config: %w", cfg.kind(), err)
	}
	degree := c.TensorParallelDegree
	if stale, err := foreignShards(dir, degree); err != nil || len(stale) > 0 {
		if err != nil {
			return nil, err
		}
		return nil, formatErrorf(cfgPath, "tensor_parallel_degree", "%d, but %s holds %s too", degree, dir, strings.Join(stale, ", "))
	}
	shards := make([]*Adapter, degree)
	for k := range shards {
		path := filepath.Join(dir, PaddleShardFile(k))
		tensors, err := ReadPdparams(path)
		if err != nil {
			return nil, err
		}
		s := &Adapter{LoRA: c, Weights: map[string]LoRAWeights{}, Extra: map[string]*Tensor{}}
		if err := s.loraFromPaddle(tensors); err != nil {
			return nil, inFile(err, path)
		}
		if len(s.Extra) > 0 {
			return nil, formatErrorf(path, sortedKeys(s.Extra)[0], "extra tensors have no shard layout here")
		}
		shards[k] = s
	}
	a, err := MergeTensorParallel(shards)
	if err != nil {
		return nil, inFile(err, filepath.Join(dir, PaddleShardFile(0)))
	}
	return a, nil
}

// MergeTensorParallel returns the whole LoRA adapter whose
// tensor-parallel shards, in rank order, are shards (SplitTensorParallel
// makes them), with tensor_parallel_degree -1: each module's split factor
// concatenated in rank order, and the replicated one, which every rank
// must hold bit for bit. The shards must carry the same modules.
func MergeTensorParallel(shards []*Adapter) (*Adapter, error) {
	if len(shards) > 0 && shards[0].Prefix != nil {
		return mergePrefix(shards)
	}
	if len(shards) == 0 || shards[0].LoRA == nil {
		return nil, errorf("tensor-parallel shards: no LoRA shards to merge")
	}
	for k, s := range shards[1:] {
		if s.LoRA == nil || !slices.Equal(s.Modules(), shards[0].Modules()) {
			return nil, errorf("tensor-parallel shards: rank %d holds other modules than rank 0", k+1)
		}
	}
	whole := *shards[0].LoRA
	whole.TensorParallelDegree = -1
	a := NewLoRA(whole)
	for _, m := range shards[0].Modules() {
		split, err := TensorParallelSplit(m)
		if err != nil {
			return nil, err
		}
		as, bs := make([]*Tensor, len(shards)), make([]*Tensor, len(shards))
		for k, s := range shards {
			as[k], bs[k] = s.Weights[m].A, s.Weights[m].B
		}
		var w LoRAWeights
		if split == ColumnParallel {
			w.A, err = sameOnEveryRank(as)
			if err == nil {
				w.B, err = concatColumns(bs)
			}
		} else {
			w.B, err = sameOnEveryRank(bs)
			if err == nil {
				w.A, err = concatRows(as)
			}
		}
		if err != nil {
			return nil, formatErrorf("", m, "%s: %w", split, err)
		}
		a.Weights[m] = w
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// foreignShards lists the shard files in dir that a save of degree ranks
// does not write (pipeline-parallel ones, or ranks from degree on).
func foreignShards(dir string, degree int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, errorf("%w", err)
	}
	ours := map[string]bool{}
	for k := range degree {
		ours[PaddleShardFile(k)] = true
	}
	re := paddleShardPattern(PaddleLoRAWeightsFile)
	var stale []string
	for _, e := range entries {
		if re.MatchString(e.Name()) && !ours[e.Name()] {
			stale = append(stale, e.Name())
		}
	}
	slices.Sort(stale)
	return stale, nil
}

// replicate returns n references to t: the factor every rank holds whole.
func replicate(t *Tensor, n int) []*Tensor {
	out := make([]*Tensor, n)
	for k := range out {
		out[k] = t
	}
	return out
}

// splitRows splits a 2-D tensor into n runs of its rows.
func splitRows(t *Tensor, n int) ([]*Tensor, error) { return split2D(t, n, 0, "inputs") }

// splitColumns splits a 2-D tensor into n runs of its columns.
func splitColumns(t *Tensor, n int) ([]*Tensor, error) { return split2D(t, n, 1, "outputs") }

// split2D splits a 2-D tensor into n equal runs along axis (0: rows, 1:
// columns); what names the axis's entries in the error.
func split2D(t *Tensor, n, axis int, what string) ([]*Tensor, error) {
	rows, cols := int(t.Shape[0]), int(t.Shape[1])
	size := int(t.Shape[axis])
	if size%n != 0 {
		return nil, fmt.Errorf("%d %s do not split into %d equal parts", size, what, n)
	}
	per := size / n
	out := make([]*Tensor, n)
	for k := range out {
		r0, r1, c0, c1 := 0, rows, 0, cols
		if axis == 0 {
			r0, r1 = k*per, (k+1)*per
		} else {
			c0, c1 = k*per, (k+1)*per
		}
		d := make([]float32, 0, (r1-r0)*(c1-c0))
		for i := r0; i < r1; i++ {
			d = append(d, t.Data[i*cols+c0:i*cols+c1]...)
		}
		out[k] = &Tensor{DType: t.DType, Shape: []int64{int64(r1 - r0), int64(c1 - c0)}, Data: d}
	}
	return out, nil
}

// concatRows stacks 2-D tensors of the same columns and type, in order.
func concatRows(ts []*Tensor) (*Tensor, error) {
	cols := ts[0].Shape[1]
	out := &Tensor{DType: ts[0].DType, Shape: []int64{0, cols}}
	for k, t := range ts {
		if t.Shape[1] != cols || t.DType != ts[0].DType {
			return nil, fmt.Errorf("rank %d holds %s %v, rank 0 %s %v", k, t.DType, t.Shape, ts[0].DType, ts[0].Shape)
		}
		out.Shape[0] += t.Shape[0]
		out.Data = append(out.Data, t.Data...)
	}
	return out, nil
}

// concatColumns puts 2-D tensors of the same rows and type side by side,
// in order.
func concatColumns(ts []*Tensor) (*Tensor, error) {
	rows := int(ts[0].Shape[0])
	var cols int
	for k, t := range ts {
		if int(t.Shape[0]) != rows || t.DType != ts[0].DType {
			return nil, fmt.Errorf("rank %d holds %s %v, rank 0 %s %v", k, t.DType, t.Shape, ts[0].DType, ts[0].Shape)
		}
		cols += int(t.Shape[1])
	}
	out := &Tensor{DType: ts[0].DType, Shape: []int64{int64(rows), int64(cols)}, Data: make([]float32, 0, rows*cols)}
	for i := range rows {
		for _, t := range ts {
			c := int(t.Shape[1])
			out.Data = append(out.Data, t.Data[i*c:(i+1)*c]...)
		}
	}
	return out, nil
}

// sameOnEveryRank returns the replicated factor, which every rank must
// hold bit for bit.
func sameOnEveryRank(ts []*Tensor) (*Tensor, error) {
	for k, t := range ts[1:] {
		same := t.DType == ts[0].DType && slices.Equal(t.Shape, ts[0].Shape)
		for i := 0; same && i < len(t.Data); i++ {
			same = math.Float32bits(t.Data[i]) == math.Float32bits(ts[0].Data[i])
		}
		if !same {
			return nil, fmt.Errorf("the replicated factor differs between rank 0 and rank %d", k+1)
		}
	}
	return ts[0].Clone(), nil
}
