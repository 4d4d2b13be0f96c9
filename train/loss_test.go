package train

import (
	"math"
	"os"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/half"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// randomFloats returns n values in [-scale, scale), rounded to float16
// when fp16 is set so that Go and ONNX Runtime see the same numbers.
func randomFloats(r *RNG, n int, scale float64, fp16 bool) []float32 {
	out := make([]float32, n)
	for i := range out {
		v := float32((2*r.Float64() - 1) * scale)
		if fp16 {
			v = half.Float16ToFloat32(half.Float32ToFloat16(v))
		}
		out[i] = v
	}
	return out
}

// floatTensor makes a tensor of elemType (float32 or float16) from x.
func floatTensor(t *testing.T, elemType dtype.Type, shape []int64, x []float32) *rt.Tensor {
	if elemType == dtype.Float16 {
		return mustTensor(t)(rt.NewFloat16FromFloat32(shape, x))
	}
	return mustTensor(t)(rt.NewFloat32(shape, x))
}

// logSumExp returns log Σ exp(row[i]) in float64.
func logSumExp(row []float32) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s)
}

// causalLMLossReference is HF's loss written plainly: mean over labels[:,
// 1:] != -100 of −log softmax(logits[:, :-1])[label].
func causalLMLossReference(logits []float32, labels []int64, batch, seq, vocab int) float64 {
	var sum float64
	count := 0
	for b := range batch {
		for t := 0; t+1 < seq; t++ {
			l := labels[b*seq+t+1]
			if l == IgnoreIndex {
				continue
			}
			row := logits[(b*seq+t)*vocab : (b*seq+t+1)*vocab]
			sum += logSumExp(row) - float64(row[l])
			count++
		}
	}
	return sum / math.Max(1, float64(count))
}

func TestCausalLMLoss(t *testing.T) {
	requireORT(t)
	tests := []struct {
		opset    int64
		elemType dtype.Type
		batch    int
		seq      int
		vocab    int
		ignore   func(b, t int) bool // which labels are -100
	}{
		{11, dtype.Float32, 2, 5, 7, func(b, t int) bool { return false }},
		{14, dtype.Float16, 2, 5, 7, func(b, t int) bool { return b == 1 && t >= 3 }},
		{17, dtype.Float32, 3, 4, 11, func(b, t int) bool { return t == 0 || (b+t)%3 == 0 }},
		{18, dtype.Float32, 1, 6, 5, func(b, t int) bool { return t%2 == 1 }},
		{13, dtype.Float32, 2, 3, 4, func(b, t int) bool { return true }}, // nothing to score: loss 0
	}
	for i, tt := range tests {
		m := identityModel(tt.opset, tt.elemType, "logits", graph.DimParam("batch"), graph.DimParam("sequence"), graph.DimValue(int64(tt.vocab)))
		loss, err := CausalLMLoss(m, "logits")
		if err != nil {
			t.Fatal(err)
		}
		r := NewRNG(uint64(i))
		x := randomFloats(r, tt.batch*tt.seq*tt.vocab, 4, tt.elemType == dtype.Float16)
		labels := make([]int64, tt.batch*tt.seq)
		for b := range tt.batch {
			for s := range tt.seq {
				labels[b*tt.seq+s] = int64(r.Intn(tt.vocab))
				if tt.ignore(b, s) {
					labels[b*tt.seq+s] = IgnoreIndex
				}
			}
		}
		shape := []int64{int64(tt.batch), int64(tt.seq), int64(tt.vocab)}
		res := runModel(t, m, map[string]*rt.Tensor{
			"x":         floatTensor(t, tt.elemType, shape, x),
			LabelsInput: mustTensor(t)(rt.NewInt64([]int64{int64(tt.batch), int64(tt.seq)}, labels)),
		}, loss)
		got := float64(res[loss].Float32()[0])
		want := causalLMLossReference(x, labels, tt.batch, tt.seq, tt.vocab)
		if math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) {
			t.Errorf("unexpected result for test %d (opset %d, %s): got %v want %v", i, tt.opset, tt.elemType, got, want)
		}
		if rank := len(res[loss].Shape()); rank != 0 {
			t.Errorf("test %d: loss has rank %d, want a scalar", i, rank)
		}
	}
}

// TestCausalLMLossGradient differentiates the loss with package autodiff
// and checks the gradient of the logits against its closed form:
// (softmax(x) − onehot(label)) / count at scored positions, 0 elsewhere.
func TestCausalLMLossGradient(t *testing.T) {
	requireORT(t)
	const batch, seq, vocab = 2, 4, 6
	for i, opset := range []int64{11, 17} {
		m := identityModel(opset, dtype.Float32, "logits", graph.DimParam("batch"), graph.DimParam("sequence"), graph.DimValue(int64(vocab)))
		loss, err := CausalLMLoss(m, "logits")
		if err != nil {
			t.Fatal(err)
		}
		g, err := autodiff.Build(m, loss, []string{"x"})
		if err != nil {
			t.Fatalf("opset %d: autodiff.Build: %v", opset, err)
		}
		if opset >= 12 {
			// The fused cross-entropy gradient: no one-hot tensor and no
			// zeros to scatter into, each as large as the logits.
			for _, n := range g.Graph().Node {
				if n.OpType == "OneHot" || n.OpType == "ConstantOfShape" {
					t.Errorf("opset %d: the loss's gradient makes a %s (%s)", opset, n.OpType, n.Name)
				}
			}
		}
		r := NewRNG(99)
		x := randomFloats(r, batch*seq*vocab, 3, false)
		labels := []int64{4, 1, IgnoreIndex, 5, 0, 2, 3, IgnoreIndex}
		res := runModel(t, g, map[string]*rt.Tensor{
			"x":         mustTensor(t)(rt.NewFloat32([]int64{batch, seq, vocab}, x)),
			LabelsInput: mustTensor(t)(rt.NewInt64([]int64{batch, seq}, labels)),
		}, loss, autodiff.GradName("x"))
		grad := res[autodiff.GradName("x")].Float32()
		count := 0
		for b := range batch {
			for s := 1; s < seq; s++ {
				if labels[b*seq+s] != IgnoreIndex {
					count++
				}
			}
		}
		for b := range batch {
			for s := range seq {
				row := x[(b*seq+s)*vocab : (b*seq+s+1)*vocab]
				lse := logSumExp(row)
				for v := range vocab {
					want := 0.0
					if s+1 < seq && labels[b*seq+s+1] != IgnoreIndex {
						want = math.Exp(float64(row[v]) - lse)
						if int64(v) == labels[b*seq+s+1] {
							want--
						}
						want /= float64(count)
					}
					got := float64(grad[(b*seq+s)*vocab+v])
					if math.Abs(got-want) > 1e-6 {
						t.Errorf("unexpected gradient for test %d (opset %d) at [%d,%d,%d]: got %v want %v", i, opset, b, s, v, got, want)
					}
				}
			}
		}
	}
}

func TestSequenceClassificationLoss(t *testing.T) {
	requireORT(t)
	tests := []struct {
		opset    int64
		elemType dtype.Type
		labels   []int64
		classes  int
	}{
		{11, dtype.Float32, []int64{0, 2, 1}, 3},
		{14, dtype.Float16, []int64{1, IgnoreIndex, 0, 1}, 2},
		{17, dtype.Float32, []int64{4}, 5},
	}
	for i, tt := range tests {
		m := identityModel(tt.opset, tt.elemType, "logits", graph.DimParam("batch"), graph.DimValue(int64(tt.classes)))
		loss, err := SequenceClassificationLoss(m, "logits")
		if err != nil {
			t.Fatal(err)
		}
		n := len(tt.labels)
		x := randomFloats(NewRNG(uint64(i+10)), n*tt.classes, 5, tt.elemType == dtype.Float16)
		res := runModel(t, m, map[string]*rt.Tensor{
			"x":         floatTensor(t, tt.elemType, []int64{int64(n), int64(tt.classes)}, x),
			LabelsInput: mustTensor(t)(rt.NewInt64([]int64{int64(n)}, tt.labels)),
		}, loss)
		var sum float64
		count := 0
		for b, l := range tt.labels {
			if l == IgnoreIndex {
				continue
			}
			row := x[b*tt.classes : (b+1)*tt.classes]
			sum += logSumExp(row) - float64(row[l])
			count++
		}
		want := sum / float64(count)
		if got := float64(res[loss].Float32()[0]); math.Abs(got-want) > 1e-5*math.Max(1, want) {
			t.Errorf("unexpected result for test %d (opset %d): got %v want %v", i, tt.opset, got, want)
		}
	}
}

func TestMSELoss(t *testing.T) {
	requireORT(t)
	tests := []struct {
		opset    int64
		elemType dtype.Type
		dims     []graph.Dim
		shape    []int64
	}{
		{11, dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(3)}, []int64{2, 3}},
		{14, dtype.Float16, []graph.Dim{graph.DimParam("batch"), graph.DimValue(1)}, []int64{4, 1}},
		{18, dtype.Float32, []graph.Dim{graph.DimParam("batch")}, []int64{5}},
	}
	for i, tt := range tests {
		m := identityModel(tt.opset, tt.elemType, "out", tt.dims...)
		loss, err := MSELoss(m, "out")
		if err != nil {
			t.Fatal(err)
		}
		n := int(graph.NumElements(tt.shape))
		r := NewRNG(uint64(i + 20))
		x := randomFloats(r, n, 2, tt.elemType == dtype.Float16)
		y := randomFloats(r, n, 2, false)
		res := runModel(t, m, map[string]*rt.Tensor{
			"x":         floatTensor(t, tt.elemType, tt.shape, x),
			LabelsInput: mustTensor(t)(rt.NewFloat32(tt.shape, y)),
		}, loss)
		var want float64
		for k := range x {
			d := float64(x[k]) - float64(y[k])
			want += d * d
		}
		want /= float64(n)
		if got := float64(res[loss].Float32()[0]); math.Abs(got-want) > 1e-5*math.Max(1, want) {
			t.Errorf("unexpected result for test %d (opset %d): got %v want %v", i, tt.opset, got, want)
		}
	}
}

func TestLossErrors(t *testing.T) {
	tests := []struct {
		name string
		err  func() error
		want string
	}{
		{"old opset", func() error {
			_, err := CausalLMLoss(identityModel(10, dtype.Float32, "logits", graph.DimValues([]int64{1, 2, 3})...), "logits")
			return err
		}, "causal_lm_loss: needs default-domain opset 11 or later, the model imports 10"},
		{"no value", func() error {
			_, err := CausalLMLoss(identityModel(14, dtype.Float32, "logits", graph.DimValues([]int64{1, 2, 3})...), "scores")
			return err
		}, `the model has no value "scores"`},
		{"rank", func() error {
			_, err := CausalLMLoss(identityModel(14, dtype.Float32, "logits", graph.DimValues([]int64{2, 3})...), "logits")
			return err
		}, `"logits" has rank 2, want 3`},
		{"integer", func() error {
			_, err := SequenceClassificationLoss(identityModel(14, dtype.Int64, "logits", graph.DimValues([]int64{2, 3})...), "logits")
			return err
		}, `"logits" is int64, not a floating-point tensor`},
		{"labels clash", func() error {
			m := identityModel(14, dtype.Float32, "logits", graph.DimValues([]int64{2, 3})...)
			m.AddInput(graph.TensorInfo("labels", dtype.Float32, []int64{2}))
			_, err := SequenceClassificationLoss(m, "logits")
			return err
		}, `an input "labels" of type float32, want int64`},
	}
	for i, tt := range tests {
		err := tt.err()
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "train: ") {
			t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.want)
		}
	}
}

// TestCausalLMLossRealModel appends the loss to the fp16 Llama exported by
// the onnxruntime-genai model builder (opset 14, fused com.microsoft ops,
// external data) and checks it against the loss computed in Go from the
// model's own logits.
func TestCausalLMLossRealModel(t *testing.T) {
	requireORT(t)
	path := "../../shared/models/tiny-llama-genai-fp16/model.onnx"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared model not available: %v", err)
	}
	m, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	loss, err := CausalLMLoss(m, "logits")
	if err != nil {
		t.Fatal(err)
	}
	b := Collate([]Example{
		{InputIDs: []int64{1, 15043, 3186, 29889, 2}, Labels: []int64{IgnoreIndex, 15043, 3186, 29889, 2}},
		{InputIDs: []int64{1, 450, 4996}, Labels: []int64{1, 450, IgnoreIndex}},
	}, 0, 0, false)
	s, err := NewSession(m, rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRunner(s, nil, []string{loss, "logits"}, CausalLM, nil)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	defer r.close()
	res, err := r.run(nil, b, false)
	if err != nil {
		t.Fatal(err)
	}
	logits := res["logits"].ToFloat32()
	want := causalLMLossReference(logits, b.Labels, b.Size, b.SeqLen, 32000)
	got := float64(res[loss].Float32()[0])
	if math.Abs(got-want) > 1e-5*math.Max(1, want) {
		t.Errorf("loss on the real model: got %v want %v", got, want)
	}
	if res["logits"].DType() != dtype.Float16 {
		t.Errorf("logits are %s, want float16 (the test means to exercise the cast)", res["logits"].DType())
	}
}
