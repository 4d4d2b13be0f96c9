package train

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// TestTrainDoRA trains DoRA on every projection of a tiny decoder: the
// trainer finds the magnitudes among the trainable tensors, the eval loss
// falls, every magnitude and factor moves, and the merged model computes
// what the trained adapted model does.
func TestTrainDoRA(t *testing.T) {
	requireORT(t)
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	cfg := adapter.DefaultLoRAConfig(".*_proj")
	cfg.R, cfg.UseDoRA = 4, true
	_, sum, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	params := sum.Trainable()
	mags := 0
	for _, p := range params {
		if strings.HasSuffix(p, ".lora_magnitude_vector.weight") {
			mags++
		}
	}
	if len(params) != 42 || mags != 14 {
		t.Fatalf("trainable: %v, want A, B and a magnitude for 14 layers", params)
	}
	tr := trainPattern(t, m, params, 30, 0.1)
	adapted, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	merged := adapted.Clone()
	if err := rewrite.Merge(merged); err != nil {
		t.Fatal(err)
	}
	ids := []int64{3, 4, 5, 6, 7, 8, 9, 10}
	feeds := func() map[string]*rt.Tensor {
		in, _ := rt.NewInt64([]int64{1, 8}, ids)
		mask, _ := rt.NewInt64([]int64{1, 8}, []int64{1, 1, 1, 1, 1, 1, 1, 1})
		pos, _ := rt.NewInt64([]int64{1, 8}, []int64{0, 1, 2, 3, 4, 5, 6, 7})
		f := map[string]*rt.Tensor{"input_ids": in, "attention_mask": mask, "position_ids": pos}
		for i := range 2 {
			for _, kv := range []string{"key", "value"} {
				f["past_key_values."+strconv.Itoa(i)+"."+kv], _ = rt.NewFloat32([]int64{1, 2, 0, 4}, nil)
			}
		}
		return f
	}
	logits := func(m *graph.Model) []float64 {
		f := feeds()
		for k := range f {
			if m.Input(k) == nil {
				delete(f, k)
			}
		}
		return runModel(t, m, f, "logits")["logits"].ToFloat64()
	}
	got, want := logits(merged), logits(adapted)
	worst := 0.0
	for i := range want {
		worst = math.Max(worst, math.Abs(got[i]-want[i])/math.Max(1, math.Abs(want[i])))
	}
	if worst > 1e-4 {
		t.Errorf("merged vs adapted logits differ by %.3g", worst)
	}
}

// TestTrainDoRAEmbeddingConv trains DoRA on ConvLM's embedding, Conv1d
// and Conv2d: the eval loss falls (3.48 to 3.09 in 40 steps, where LoRA
// reaches 2.77: an embedding's direction renormalises over the whole
// vocabulary, and its small magnitudes must grow to let rows grow), every
// magnitude and factor moves, and the merged model computes what the
// trained adapted model does.
func TestTrainDoRAEmbeddingConv(t *testing.T) {
	requireORT(t)
	m, err := models.ConvLM(models.ConvLMTiny())
	if err != nil {
		t.Fatal(err)
	}
	cfg := adapter.DefaultLoRAConfig("model.embed_tokens", "model.conv1d", "model.conv2d")
	cfg.R, cfg.UseDoRA = 4, true
	_, sum, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	params := sum.Trainable()
	if len(params) != 9 || !slices.Contains(params, "model.conv2d.lora_magnitude_vector.weight") {
		t.Fatalf("trainable: %v, want A, B and a magnitude for 3 layers", params)
	}
	tr := trainPattern(t, m, params, 40, 0.2)
	adapted, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	merged := adapted.Clone()
	if err := rewrite.Merge(merged); err != nil {
		t.Fatal(err)
	}
	ids, err := rt.NewInt64([]int64{1, 8}, []int64{3, 4, 5, 6, 7, 8, 9, 10})
	if err != nil {
		t.Fatal(err)
	}
	logits := func(m *graph.Model) []float64 {
		return runModel(t, m, map[string]*rt.Tensor{"input_ids": ids}, "logits")["logits"].ToFloat64()
	}
	got, want := logits(merged), logits(adapted)
	worst := 0.0
	for i := range want {
		worst = math.Max(worst, math.Abs(got[i]-want[i])/math.Max(1, math.Abs(want[i])))
	}
	if !(worst <= 1e-4) {
		t.Errorf("merged vs adapted logits differ by %.3g", worst)
	}
}

// TestDoRAGradients checks the gradient graph of a DoRA layer (float32) of
// each kind against central finite differences of the forward model: with
// the norm not detached, for A, B and the magnitude (every op DoRA emits
// has a right rule); with it detached, as training runs, against the model
// whose norm is held at its current value (HF PEFT's detach()), and the
// magnitude's gradient is the same either way. The kinds: a MatMul, an
// embedding (whose norm reads the table through AᵀW and AᵀA), a Conv1d
// with a bias (left out of the rescaling), a strided Conv2d and an int4
// MatMulNBits (TestQDQDoRAGradients has the QDQ layer).
func TestDoRAGradients(t *testing.T) {
	requireORT(t)
	for _, c := range []struct {
		name string
		// layer returns the layer's weight initializers, its node writing
		// "y" of shape y, and its input with the value fed.
		layer func(randoms func(n int, scale float64) []float64) (inits []*onnxpb.TensorProto, n *onnxpb.NodeProto, in *onnxpb.ValueInfoProto, x *rt.Tensor, y []int64)
	}{
		{"matmul", func(randoms func(int, float64) []float64) ([]*onnxpb.TensorProto, *onnxpb.NodeProto, *onnxpb.ValueInfoProto, *rt.Tensor, []int64) {
			const in, out, rows = 5, 4, 3
			x, _ := rt.NewFloat32([]int64{rows, in}, f32s(randoms(rows*in, 1)))
			return []*onnxpb.TensorProto{graph.NewFloatTensor("layer.proj.weight", dtype.Float32, []int64{in, out}, randoms(in*out, 0.5))},
				&onnxpb.NodeProto{OpType: "MatMul", Name: "/layer/proj/MatMul", Input: []string{"x", "layer.proj.weight"}, Output: []string{"y"}},
				graph.TensorInfo("x", dtype.Float32, []int64{rows, in}), x, []int64{rows, out}
		}},
		{"embedding", func(randoms func(int, float64) []float64) ([]*onnxpb.TensorProto, *onnxpb.NodeProto, *onnxpb.ValueInfoProto, *rt.Tensor, []int64) {
			const vocab, dim = 5, 4
			x, _ := rt.NewInt64([]int64{3}, []int64{0, 3, 3})
			return []*onnxpb.TensorProto{graph.NewFloatTensor("layer.proj.weight", dtype.Float32, []int64{vocab, dim}, randoms(vocab*dim, 0.5))},
				&onnxpb.NodeProto{OpType: "Gather", Name: "/layer/proj/Gather", Input: []string{"layer.proj.weight", "x"}, Output: []string{"y"}},
				graph.TensorInfo("x", dtype.Int64, []int64{3}), x, []int64{3, dim}
		}},
		{"conv1d-bias", func(randoms func(int, float64) []float64) ([]*onnxpb.TensorProto, *onnxpb.NodeProto, *onnxpb.ValueInfoProto, *rt.Tensor, []int64) {
			x, _ := rt.NewFloat32([]int64{1, 3, 6}, f32s(randoms(18, 1)))
			return []*onnxpb.TensorProto{
					graph.NewFloatTensor("layer.proj.weight", dtype.Float32, []int64{4, 3, 3}, randoms(36, 0.5)),
					graph.NewFloatTensor("layer.proj.bias", dtype.Float32, []int64{4}, randoms(4, 1)),
				},
				&onnxpb.NodeProto{OpType: "Conv", Name: "/layer/proj/Conv", Input: []string{"x", "layer.proj.weight", "layer.proj.bias"}, Output: []string{"y"},
					Attribute: []*onnxpb.AttributeProto{graph.AttrInts("pads", 1, 1)}},
				graph.TensorInfo("x", dtype.Float32, []int64{1, 3, 6}), x, []int64{1, 4, 6}
		}},
		{"conv2d-strided", func(randoms func(int, float64) []float64) ([]*onnxpb.TensorProto, *onnxpb.NodeProto, *onnxpb.ValueInfoProto, *rt.Tensor, []int64) {
			x, _ := rt.NewFloat32([]int64{1, 2, 5, 5}, f32s(randoms(50, 1)))
			return []*onnxpb.TensorProto{graph.NewFloatTensor("layer.proj.weight", dtype.Float32, []int64{3, 2, 2, 3}, randoms(36, 0.5))},
				&onnxpb.NodeProto{OpType: "Conv", Name: "/layer/proj/Conv", Input: []string{"x", "layer.proj.weight"}, Output: []string{"y"},
					Attribute: []*onnxpb.AttributeProto{graph.AttrInts("strides", 2, 1)}},
				graph.TensorInfo("x", dtype.Float32, []int64{1, 2, 5, 5}), x, []int64{1, 3, 2, 3}
		}},
		// An int4 layer (zero points, a bias, K = 40 padding its last
		// block of 16): its norm takes Aᵀ·W from the layer's own node,
		// fed x's rows with Aᵀ's appended, which the free norm's gradient
		// crosses.
		{"int4", func(randoms func(int, float64) []float64) ([]*onnxpb.TensorProto, *onnxpb.NodeProto, *onnxpb.ValueInfoProto, *rt.Tensor, []int64) {
			const in, out, rows = 40, 6, 3
			x, _ := rt.NewFloat32([]int64{rows, in}, f32s(randoms(rows*in, 1)))
			inits, n := int4Layer(t, in, out, randoms)
			return inits, n, graph.TensorInfo("x", dtype.Float32, []int64{rows, in}), x, []int64{rows, out}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 1))
			randoms := func(n int, scale float64) []float64 {
				v := make([]float64, n)
				for i := range v {
					v[i] = float64(float32(rng.NormFloat64() * scale))
				}
				return v
			}
			inits, layer, in, x, y := c.layer(randoms)
			checkDoRAGradients(t, inits, layer, in, x, y, randoms)
		})
	}
}

// checkDoRAGradients builds loss = Σ tanh(y)⊙target on layer (which writes
// y of shape yShape from input in, fed x; before are nodes that feed it,
// such as a QDQ weight's DequantizeLinear), gives the layer DoRA with
// random A, B and magnitude, and compares the gradients of those three
// with finite differences, with the norm free and detached (see
// TestDoRAGradients).
func checkDoRAGradients(t *testing.T, inits []*onnxpb.TensorProto, layer *onnxpb.NodeProto, in *onnxpb.ValueInfoProto, xt *rt.Tensor, yShape []int64, randoms func(int, float64) []float64, before ...*onnxpb.NodeProto) {
	t.Helper()
	g := &onnxpb.GraphProto{Name: "dora"}
	g.Initializer = append(inits, graph.NewFloatTensor("target", dtype.Float32, yShape, randoms(int(graph.NumElements(yShape)), 1)))
	g.Input = []*onnxpb.ValueInfoProto{in}
	g.Node = append(before, layer,
		&onnxpb.NodeProto{OpType: "Tanh", Name: "/tanh", Input: []string{"y"}, Output: []string{"h"}},
		&onnxpb.NodeProto{OpType: "Mul", Name: "/mul", Input: []string{"h", "target"}, Output: []string{"p"}},
		&onnxpb.NodeProto{OpType: "ReduceSum", Name: "/sum", Input: []string{"p"}, Output: []string{"loss"}, Attribute: []*onnxpb.AttributeProto{graph.AttrInt("keepdims", 0)}},
	)
	g.Output = []*onnxpb.ValueInfoProto{graph.TensorInfo("loss", dtype.Float32, nil)}
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}, Graph: g}, "")
	if layer.Domain != "" {
		m.SetOpset(layer.Domain, 1)
	}
	cfg := adapter.DefaultLoRAConfig("layer.proj")
	cfg.R, cfg.Alpha, cfg.UseDoRA = 2, 3, true
	sites, sum, err := rewrite.InjectLoRA(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := sites[0]
	shapes := map[string][]int64{}
	values := map[string][]float64{}
	for _, name := range []string{s.A, s.B, s.Magnitude} {
		shapes[name] = m.Initializer(name).Dims
		values[name] = randoms(int(graph.NumElements(shapes[name])), 0.5)
	}
	for i, v := range values[s.Magnitude] {
		values[s.Magnitude][i] = 1 + 2*math.Abs(v)
	}
	set := func(m *graph.Model, name string, v []float64) {
		m.RemoveInitializer(name)
		m.AddInitializer(graph.NewFloatTensor(name, dtype.Float32, shapes[name], v))
	}
	for name, v := range values {
		set(m, name, v)
	}
	x := map[string]*rt.Tensor{in.Name: xt}
	run := func(m *graph.Model, feeds map[string]*rt.Tensor, outs ...string) map[string]*rt.Tensor {
		return runModel(t, m, feeds, outs...)
	}
	gradients := func(detached ...string) map[string][]float64 {
		dm := m.Clone()
		autodiff.MarkStopGradient(dm, detached...)
		gm, err := autodiff.Build(dm, "loss", sum.Trainable())
		if err != nil {
			t.Fatal(err)
		}
		feeds := map[string]*rt.Tensor{in.Name: xt}
		var outs []string
		for name, v := range values {
			feeds[name], _ = rt.NewFloat32(shapes[name], f32s(v))
			outs = append(outs, autodiff.GradName(name))
		}
		res := run(gm, feeds, outs...)
		grads := map[string][]float64{}
		for name := range values {
			grads[name] = res[autodiff.GradName(name)].ToFloat64()
		}
		return grads
	}
	// finiteDiff returns the central differences of f's loss; frozen, when
	// set, replaces the norm by its value at the unperturbed point.
	norm := run(withOutput(m, s.DoRANorm), x, s.DoRANorm)[s.DoRANorm]
	finiteDiff := func(frozen bool) map[string][]float64 {
		fm := m.Clone()
		if frozen {
			fm.AddInitializer(graph.NewFloatTensor("frozen_norm", dtype.Float32, norm.Shape(), norm.ToFloat64()))
			fm.ReplaceUses(s.DoRANorm, "frozen_norm")
		}
		const h = 1e-3
		fd := map[string][]float64{}
		for name, v := range values {
			fd[name] = make([]float64, len(v))
			for i := range v {
				loss := [2]float64{}
				for k, d := range []float64{h, -h} {
					p := slices.Clone(v)
					p[i] += d
					set(fm, name, p)
					loss[k] = run(fm, x, "loss")["loss"].ToFloat64()[0]
				}
				set(fm, name, v)
				fd[name][i] = (loss[0] - loss[1]) / (2 * h)
			}
		}
		return fd
	}
	compare := func(what string, got, want map[string][]float64) {
		t.Helper()
		for name, w := range want {
			for i := range w {
				if d := math.Abs(got[name][i] - w[i]); !(d <= 2e-3*math.Max(1, math.Abs(w[i]))) {
					t.Errorf("%s: d loss/d %s[%d]: got %.9g, finite differences %.9g", what, name, i, got[name][i], w[i])
				}
			}
		}
	}
	full := gradients()
	compare("not detached", full, finiteDiff(false))
	detached, err := rewrite.DetachedValues(m)
	if err != nil || len(detached) != 1 {
		t.Fatalf("DetachedValues: %v %v", detached, err)
	}
	held := gradients(detached...)
	compare("detached", held, finiteDiff(true))
	if slices.Equal(held[s.A], full[s.A]) {
		t.Errorf("detaching the norm did not change A's gradient: the norm is not detached")
	}
	compare("magnitude", map[string][]float64{s.Magnitude: held[s.Magnitude]}, map[string][]float64{s.Magnitude: full[s.Magnitude]})
}

// f32s converts v to float32.
func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// withOutput returns a copy of m with the float32 value as one more
// output.
func withOutput(m *graph.Model, value string) *graph.Model {
	c := m.Clone()
	c.AddOutput(graph.TensorInfo(value, dtype.Float32, nil))
	return c
}
