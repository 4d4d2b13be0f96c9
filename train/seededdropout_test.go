package train

import (
	"math"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestSeededLoRADropout checks SeedLoRADropout on a layer [2, 3, 4] with
// W = 0 and A = B = I (scale 1), so that y is the dropped-out x: in
// training, y = x/(1-p) where the fed draw is at least p and 0 where it
// is below, against that formula computed here; outside training y = x
// whatever the draws.
func TestSeededLoRADropout(t *testing.T) {
	requireORT(t)
	const rows, seq, in, p = 2, 3, 4, 0.4
	g := &onnxpb.GraphProto{
		Name:        "dropout",
		Node:        []*onnxpb.NodeProto{{OpType: "MatMul", Name: "/proj/MatMul", Input: []string{"x", "proj.weight"}, Output: []string{"y"}}},
		Initializer: []*onnxpb.TensorProto{graph.NewFloat32Tensor("proj.weight", dtype.Float32, []int64{in, in}, make([]float32, in*in))},
		Input:       []*onnxpb.ValueInfoProto{graph.TensorInfo("x", dtype.Float32, []int64{-1, -1, in})},
		Output:      []*onnxpb.ValueInfoProto{graph.TensorInfo("y", dtype.Float32, []int64{-1, -1, in})},
	}
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}, Graph: g}, "")
	cfg := adapter.DefaultLoRAConfig("proj")
	cfg.R, cfg.Alpha, cfg.Dropout = in, in, p
	ad := adapter.NewLoRA(cfg)
	eye := make([]float32, in*in)
	for i := range in {
		eye[i*in+i] = 1
	}
	ad.Weights["proj"] = adapter.LoRAWeights{A: adapter.NewTensor([]int64{in, in}, eye), B: adapter.NewTensor([]int64{in, in}, eye)}
	if _, _, err := rewrite.ApplyLoRA(m, ad); err != nil {
		t.Fatal(err)
	}
	modules, err := SeedLoRADropout(m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(modules, []string{"proj"}) {
		t.Fatalf("seeded modules %v, want [proj]", modules)
	}
	for _, n := range m.Graph().Node {
		if n.OpType == "Dropout" {
			t.Fatalf("a Dropout node is left: %s", n.Name)
		}
	}
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	xs := make([]float32, rows*seq*in)
	for i := range xs {
		xs[i] = float32(i + 1)
	}
	draws := DropoutDraws{Seed: 7, Micro: 3}
	u := draws.Uniforms("proj", rows, seq, 0, in)
	x, _ := rt.NewFloat32([]int64{rows, seq, in}, xs)
	uin, _ := rt.NewFloat32([]int64{rows, seq, in}, u)
	dropped := 0
	for _, training := range []bool{true, false} {
		mode, _ := rt.NewBool(nil, []bool{training})
		out, err := s.Run(map[string]*rt.Tensor{"x": x, "proj" + DropoutUniformSuffix: uin, rewrite.TrainingModeInput: mode}, []string{"y"})
		if err != nil {
			t.Fatal(err)
		}
		for i, got := range out["y"].ToFloat32() {
			want := xs[i]
			if training {
				want = 0
				if u[i] >= p {
					want = xs[i] / (1 - p)
				} else {
					dropped++
				}
			}
			if math.Abs(float64(got-want)) > 1e-6*math.Abs(float64(want)) {
				t.Errorf("training %v, value %d: y %v, want %v (draw %v)", training, i, got, want, u[i])
			}
		}
	}
	if dropped == 0 || dropped == len(xs) {
		t.Errorf("%d of %d values dropped", dropped, len(xs))
	}
}

// TestDropoutDraws checks that a draw depends on its row of the global
// batch, position and column alone: a shard of rows, a run of columns and
// a longer padding see the same draws as the whole batch, and another
// micro-batch, module or seed others. The draws lie in [0, 1) with a mean
// near 1/2.
func TestDropoutDraws(t *testing.T) {
	const rows, seq, cols = 4, 5, 6
	d := DropoutDraws{Seed: 1, Micro: 2}
	whole := d.Uniforms("m", rows, seq, 0, cols)
	at := func(u []float32, seqOf, colsOf, r, p, c int) float32 { return u[(r*seqOf+p)*colsOf+c] }
	shard := DropoutDraws{Seed: 1, Micro: 2, FirstRow: 2}.Uniforms("m", 2, seq+3, 4, 2)
	for r := range 2 {
		for p := range seq {
			for c := range 2 {
				if g, w := at(shard, seq+3, 2, r, p, c), at(whole, seq, cols, 2+r, p, 4+c); g != w {
					t.Fatalf("row %d, position %d, column %d: the shard draws %v, the whole batch %v", 2+r, p, 4+c, g, w)
				}
			}
		}
	}
	for _, other := range [][]float32{
		DropoutDraws{Seed: 1, Micro: 3}.Uniforms("m", rows, seq, 0, cols),
		DropoutDraws{Seed: 2, Micro: 2}.Uniforms("m", rows, seq, 0, cols),
		d.Uniforms("n", rows, seq, 0, cols),
	} {
		same := 0
		for i := range whole {
			if other[i] == whole[i] {
				same++
			}
		}
		if same > 2 {
			t.Errorf("%d of %d draws are the same in another stream", same, len(whole))
		}
	}
	big := d.Uniforms("m", 64, 64, 0, 64)
	var sum float64
	for _, v := range big {
		if v < 0 || v >= 1 {
			t.Fatalf("draw %v is outside [0, 1)", v)
		}
		sum += float64(v)
	}
	if mean := sum / float64(len(big)); math.Abs(mean-0.5) > 0.01 {
		t.Errorf("mean draw %v, want about 0.5", mean)
	}
}

// TestSeededDropoutResume checks that with seeded LoRA dropout a run
// stopped after a checkpoint and resumed ends with the parameters of the
// run that never stopped, bit for bit: the draws depend on the step, not
// on a generator's state.
func TestSeededDropoutResume(t *testing.T) {
	requireORT(t)
	base, err := models.GPT2(models.GPT2Tiny())
	if err != nil {
		t.Fatal(err)
	}
	lc := adapter.DefaultLoRAConfig(".*c_attn")
	lc.R, lc.Dropout = 4, 0.3
	_, sum, err := rewrite.InjectLoRA(base, lc, rewrite.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	data := patternData(10, 6, 32, 2)
	opts := testOptions()
	opts.Steps, opts.BatchSize, opts.SeededDropout = 4, 3, true
	steps := func(tr *Trainer, n int) {
		t.Helper()
		for range n {
			if _, err := tr.TrainStep(); err != nil {
				t.Fatal(err)
			}
		}
	}
	straight, err := NewTrainer(base, sum.Trainable(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer straight.Close()
	steps(straight, 4)
	first, err := NewTrainer(base, sum.Trainable(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	steps(first, 2)
	path, err := first.SaveCheckpoint(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	resumed, err := NewTrainer(base, sum.Trainable(), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if err := resumed.LoadCheckpoint(path); err != nil {
		t.Fatal(err)
	}
	steps(resumed, 2)
	for i, p := range straight.Params() {
		if !slices.Equal(p.Data, resumed.Params()[i].Data) {
			t.Errorf("%s differs after the resume", p.Name)
		}
	}
}
