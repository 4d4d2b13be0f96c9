package adapter

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// shardLoRA returns a LoRA adapter on a column-parallel module (q_proj,
// float16) and a row-parallel one (o_proj), with values that are all
// distinct, so that a misplaced one shows.
func shardLoRA() *Adapter {
	cfg := DefaultLoRAConfig(`.*q_proj`, `.*o_proj`)
	cfg.R, cfg.Alpha = 2, 4
	a := NewLoRA(cfg)
	q := LoRAWeights{A: NewTensor([]int64{4, 2}, seq(8, 0.5, 0.25)), B: NewTensor([]int64{2, 6}, seq(12, -1, 0.125))}
	q.A.DType, q.B.DType = dtype.Float16, dtype.Float16
	a.Weights["model.layers.0.self_attn.q_proj"] = q
	a.Weights["model.layers.0.self_attn.o_proj"] = LoRAWeights{A: NewTensor([]int64{6, 2}, seq(12, 3, -0.3)), B: NewTensor([]int64{2, 4}, seq(8, 0.01, 0.7))}
	return a
}

func TestPaddleShardsSplitMerge(t *testing.T) {
	a := shardLoRA()
	dir := t.TempDir()
	if err := SavePaddleShards(dir, a, 2); err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	if want := "lora_config.json lora_model_state.tp00.pdparams lora_model_state.tp01.pdparams"; strings.Join(names, " ") != want {
		t.Fatalf("shards folder holds %v, want %s", names, want)
	}
	var cfg map[string]any
	b, err := os.ReadFile(filepath.Join(dir, PaddleLoRAConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["tensor_parallel_degree"] != 2.0 {
		t.Errorf("lora_config.json: tensor_parallel_degree %v (%v), want 2", cfg["tensor_parallel_degree"], err)
	}

	// Each shard holds its rank's part, read element by element from the
	// whole factors: q_proj's lora_B [2, 6] by output columns 3k..3k+2,
	// o_proj's lora_A [6, 2] by input rows 3k..3k+2; the other factors
	// whole.
	q, o := a.Weights["model.layers.0.self_attn.q_proj"], a.Weights["model.layers.0.self_attn.o_proj"]
	for k := range 2 {
		s, err := ReadPdparams(filepath.Join(dir, PaddleShardFile(k)))
		if err != nil {
			t.Fatal(err)
		}
		qB, qA := s["model.layers.0.self_attn.q_proj.lora_B"], s["model.layers.0.self_attn.q_proj.lora_A"]
		oA, oB := s["model.layers.0.self_attn.o_proj.lora_A"], s["model.layers.0.self_attn.o_proj.lora_B"]
		if qB == nil || qA == nil || oA == nil || oB == nil || len(s) != 4 {
			t.Fatalf("shard %d holds %v", k, sortedKeys(s))
		}
		for i := range 2 {
			for j := range 3 {
				if got, want := qB.Data[i*3+j], q.B.Data[i*6+3*k+j]; got != want {
					t.Errorf("shard %d: q_proj.lora_B[%d,%d] = %v, want %v", k, i, j, got, want)
				}
			}
		}
		for i := range 3 {
			for j := range 2 {
				if got, want := oA.Data[i*2+j], o.A.Data[(3*k+i)*2+j]; got != want {
					t.Errorf("shard %d: o_proj.lora_A[%d,%d] = %v, want %v", k, i, j, got, want)
				}
			}
		}
		if qB.DType != dtype.Float16 || !equalBits(qA.Data, q.A.Data) || !equalBits(oB.Data, o.B.Data) {
			t.Errorf("shard %d: the replicated factors or the float16 type are not the adapter's", k)
		}
	}

	// A sharded adapter does not load as one: it must be merged first.
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "merge the shards") {
		t.Errorf("LoadDir of shards: got %v, want an error that says to merge first", err)
	}

	// Merged back: the adapter, bit for bit, and the same PaddleNLP
	// directory as the adapter saved whole.
	m, err := LoadPaddleShards(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.LoRA.TensorParallelDegree != -1 {
		t.Errorf("merged tensor_parallel_degree %d, want -1", m.LoRA.TensorParallelDegree)
	}
	for name, w := range a.Weights {
		g := m.Weights[name]
		if g.A == nil || g.A.DType != w.A.DType || g.B.DType != w.B.DType || !equalBits(g.A.Data, w.A.Data) || !equalBits(g.B.Data, w.B.Data) {
			t.Errorf("merged %s differs from the adapter's", name)
		}
	}
	whole, merged := t.TempDir(), t.TempDir()
	if err := SavePaddleDir(whole, a); err != nil {
		t.Fatal(err)
	}
	if err := SavePaddleDir(merged, m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{PaddleLoRAConfigFile, PaddleLoRAWeightsFile} {
		x, _ := os.ReadFile(filepath.Join(whole, f))
		y, _ := os.ReadFile(filepath.Join(merged, f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s of the merged shards differs from the adapter's", f)
		}
	}
}

// equalBits reports whether a and b hold the same float32 bits.
func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestPaddleShardsErrors(t *testing.T) {
	other := shardLoRA()
	other.Weights["model.layers.0.mlp.fc"] = other.Weights["model.layers.0.self_attn.o_proj"]
	odd := shardLoRA()
	for _, tt := range []struct {
		name   string
		a      *Adapter
		degree int
		want   string
	}{
		{"unknown module", other, 2, `module "model.layers.0.mlp.fc" has no tensor-parallel layout`},
		{"indivisible", odd, 4, `"model.layers.0.self_attn.o_proj": row-parallel: 6 inputs do not split into 4 equal parts`},
		{"degree 1", odd, 1, "degree 1: want 2 or more"},
		{"prefix", samplePrefix(false), 2, "only LoRA adapters are sharded"},
		{"extra", sampleLoRA(), 2, "has no shard layout here"},
	} {
		dir := t.TempDir()
		err := SavePaddleShards(dir, tt.a, tt.degree)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error with %q", tt.name, err, tt.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%s: the failed save left %d files", tt.name, len(entries))
		}
	}

	// Shards of another save, and a replicated factor that differs.
	dir := t.TempDir()
	if err := SavePaddleShards(dir, shardLoRA(), 2); err != nil {
		t.Fatal(err)
	}
	s1 := filepath.Join(dir, PaddleShardFile(1))
	tensors, err := ReadPdparams(s1)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, PaddleShardFile(2))
	if err := WritePdparams(stale, tensors); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPaddleShards(dir); err == nil || !strings.Contains(err.Error(), "lora_model_state.tp02.pdparams too") {
		t.Errorf("merge with a stale shard: got %v", err)
	}
	if err := SavePaddleShards(dir, shardLoRA(), 2); err == nil || !strings.Contains(err.Error(), "of another save") {
		t.Errorf("save over a stale shard: got %v", err)
	}
	os.Remove(stale)
	tensors["model.layers.0.self_attn.q_proj.lora_A"].Data[0] += 1
	if err := WritePdparams(s1, tensors); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPaddleShards(dir); err == nil || !strings.Contains(err.Error(), "replicated factor differs between rank 0 and rank 1") {
		t.Errorf("merge with differing replicas: got %v", err)
	}
}

// TestPrefixTensorParallel splits a prefix table of 2 layers × key and
// value × 2 KV heads × head dim 2 among 2 ranks, checks each shard's
// columns against the table's own layout (layer, key/value, head, dim),
// and merges the shards back bit for bit.
func TestPrefixTensorParallel(t *testing.T) {
	a := samplePrefix(false)
	a.Prompt.DType = dtype.Float32
	shards, err := SplitTensorParallel(a, 2)
	if err != nil {
		t.Fatal(err)
	}
	const P, L, kv, d = 3, 2, 2, 2
	for k, s := range shards {
		if s.Prefix.TensorParallelDegree != 2 || !slices.Equal(s.Prompt.Shape, []int64{P, L * 2 * d}) {
			t.Fatalf("rank %d: degree %d, prompt %v", k, s.Prefix.TensorParallelDegree, s.Prompt.Shape)
		}
		for p := range P {
			for lk := range 2 * L {
				for j := range d {
					got := s.Prompt.Data[p*L*2*d+lk*d+j]
					want := a.Prompt.Data[p*L*2*kv*d+(lk*kv+k)*d+j]
					if got != want {
						t.Fatalf("rank %d, token %d, layer·kind %d, dim %d: %v, want %v", k, p, lk, j, got, want)
					}
				}
			}
		}
	}
	merged, err := MergeTensorParallel(shards)
	if err != nil {
		t.Fatal(err)
	}
	if merged.Prefix.TensorParallelDegree != -1 || !equalBits(merged.Prompt.Data, a.Prompt.Data) || !slices.Equal(merged.Prompt.Shape, a.Prompt.Shape) {
		t.Errorf("the merged prefix shards are not the table")
	}
	if _, err := SplitTensorParallel(a, 4); err == nil || !strings.Contains(err.Error(), "does not divide the prefix's 2 key/value heads") {
		t.Errorf("4 ranks of 2 KV heads: %v", err)
	}
	if _, err := SplitTensorParallel(samplePrefix(true), 2); err == nil || !strings.Contains(err.Error(), "prefix_projection") {
		t.Errorf("a projection: %v", err)
	}
}
