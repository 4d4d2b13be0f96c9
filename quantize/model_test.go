package quantize_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// requireORT skips the test when the ONNX Runtime library cannot be found.
func requireORT(t testing.TB) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// decoderInputs are a run of seq tokens without a past.
func decoderInputs(seq, vocab int) models.DecoderInputs {
	in := models.DecoderInputs{Batch: 1, Seq: seq}
	for i := range seq {
		in.InputIDs = append(in.InputIDs, int64((i*7+3)%vocab))
		in.AttentionMask = append(in.AttentionMask, 1)
		in.PositionIDs = append(in.PositionIDs, int64(i))
	}
	return in
}

// runDecoder runs m on in with empty past key/values and returns logits.
func runDecoder(t *testing.T, m *graph.Model, in models.DecoderInputs, positions bool) []float32 {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	shape := []int64{int64(in.Batch), int64(in.Seq)}
	feeds := map[string]*rt.Tensor{}
	must := func(x *rt.Tensor, err error) *rt.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	feeds["input_ids"] = must(rt.NewInt64(shape, in.InputIDs))
	feeds["attention_mask"] = must(rt.NewInt64(shape, in.AttentionMask))
	if positions {
		feeds["position_ids"] = must(rt.NewInt64(shape, in.PositionIDs))
	}
	for _, v := range s.Inputs() {
		if strings.HasPrefix(v.Name, "past_key_values.") {
			feeds[v.Name] = must(rt.NewFloat32([]int64{1, v.Shape[1], 0, v.Shape[3]}, nil))
		}
	}
	res, err := s.Run(feeds, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return res["logits"].ToFloat32()
}

// dequantizedWeights returns the float model's weights with each
// quantized layer's weight replaced by its dequantized value, in the
// float weight's own layout.
func dequantizedWeights(t *testing.T, float, quantized *graph.Model, rep *quantize.Report) models.Weights {
	t.Helper()
	w, err := models.WeightsOf(float)
	if err != nil {
		t.Fatal(err)
	}
	transposed := map[string]bool{}
	linears, err := rewrite.FindLinears(float)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range linears {
		transposed[l.Weight] = l.WeightTransposed
	}
	for _, l := range rep.Layers {
		qw, err := quant.ReadNode(quantized, quantized.NodeByName(l.NewNode))
		if err != nil {
			t.Fatal(err)
		}
		deq, err := qw.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		if transposed[l.Weight] {
			tv := make([]float32, len(deq))
			for k := range l.K {
				for n := range l.N {
					tv[n*l.K+k] = deq[k*l.N+n]
				}
			}
			deq = tv
		}
		w[l.Weight] = models.Tensor{Shape: w[l.Weight].Shape, Data: deq}
	}
	return w
}

// relFrobenius returns ‖got − want‖ / ‖want‖.
func relFrobenius(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, s float64
	for i := range want {
		e := float64(got[i]) - want[i]
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d += e * e
		s += want[i] * want[i]
	}
	if d == 0 {
		return 0
	}
	return math.Sqrt(d / s)
}

// relMax returns max|got − want| / max|want|: 0 where they are equal,
// +Inf where the lengths differ or a value is NaN.
func relMax(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, s float64
	for i := range want {
		e := math.Abs(float64(got[i]) - want[i])
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = max(d, e)
		s = max(s, math.Abs(want[i]))
	}
	if d == 0 {
		return 0
	}
	return d / s
}

// TestRelErrorsSeeNaN: for relFrobenius and relMax, a NaN, on either side
// or both, is no match; equal zeros are.
func TestRelErrorsSeeNaN(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		got  []float32
		want []float64
	}{{[]float32{1, float32(nan)}, []float64{1, 2}}, {[]float32{1, 2}, []float64{1, nan}}, {[]float32{float32(nan)}, []float64{nan}}} {
		if f, m := relFrobenius(c.got, c.want), relMax(c.got, c.want); !math.IsInf(f, 1) || !math.IsInf(m, 1) {
			t.Errorf("relFrobenius, relMax(%v, %v) = %v, %v, want +Inf", c.got, c.want, f, m)
		}
	}
	if f, m := relFrobenius([]float32{0}, []float64{0}), relMax([]float32{0}, []float64{0}); f != 0 || m != 0 {
		t.Errorf("relFrobenius, relMax of zeros = %v, %v, want 0", f, m)
	}
}

// TestQuantizedModelsRun quantizes the LLaMA and GPT-2 builders, runs
// them in ONNX Runtime, and holds the logits to the float64 reference
// with the dequantized weights (which they must equal to float tolerance)
// and to the float model (which RTN moves them from, within a bound).
func TestQuantizedModelsRun(t *testing.T) {
	requireORT(t)
	llama := models.LlamaMini()
	llama.InitStd = 0.1
	gpt2 := models.GPT2Tiny()
	gpt2.Gemm = true
	gpt2.InitStd = 0.1
	for _, test := range []struct {
		name   string
		build  func() (*graph.Model, error)
		ref    func(w models.Weights, in models.DecoderInputs) (*models.DecoderOutputs, error)
		vocab  int
		pos    bool
		o      quantize.Options
		layers int
		// logitsB bounds ‖Δlogits‖/‖logits‖ against the float model. The
		// measured figures (4 bits: 0.27, 0.26, 0.15; 8 bits: 0.017) are
		// about 3.5 times the weights' RelError: the error of the random
		// models' logits grows linearly with that of their weights.
		logitsB float64
	}{
		{"llama-mini asymmetric", func() (*graph.Model, error) { return models.Llama(llama) }, func(w models.Weights, in models.DecoderInputs) (*models.DecoderOutputs, error) {
			return models.LlamaReference(llama, w, in)
		}, llama.VocabSize, true, quantize.Options{Bits: 4, BlockSize: 32}, 15, 0.35},
		{"llama-mini symmetric block 16", func() (*graph.Model, error) { return models.Llama(llama) }, func(w models.Weights, in models.DecoderInputs) (*models.DecoderOutputs, error) {
			return models.LlamaReference(llama, w, in)
		}, llama.VocabSize, true, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true}, 15, 0.35},
		{"gpt2-tiny gemm", func() (*graph.Model, error) { return models.GPT2(gpt2) }, func(w models.Weights, in models.DecoderInputs) (*models.DecoderOutputs, error) {
			return models.GPT2Reference(gpt2, w, in)
		}, gpt2.VocabSize, false, quantize.Options{Bits: 4, BlockSize: 16}, 9, 0.25},
		{"llama-mini 8 bits", func() (*graph.Model, error) { return models.Llama(llama) }, func(w models.Weights, in models.DecoderInputs) (*models.DecoderOutputs, error) {
			return models.LlamaReference(llama, w, in)
		}, llama.VocabSize, true, quantize.Options{Bits: 8, BlockSize: 32}, 15, 0.03},
	} {
		t.Run(test.name, func(t *testing.T) {
			float, err := test.build()
			if err != nil {
				t.Fatal(err)
			}
			m := float.Clone()
			rep, err := quantize.Model(m, test.o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Layers) != test.layers || len(rep.Skipped) != 0 {
				t.Fatalf("quantized %d layers and skipped %v, want %d and none", len(rep.Layers), rep.Skipped, test.layers)
			}
			in := decoderInputs(6, test.vocab)
			got := runDecoder(t, m, in, test.pos)

			deqRef, err := test.ref(dequantizedWeights(t, float, m, rep), in)
			if err != nil {
				t.Fatal(err)
			}
			if e := relMax(got, deqRef.Logits); e > 1e-4 {
				t.Errorf("ORT's logits of the quantized model differ from the reference with dequantized weights by %.3g, want ≤ 1e-4", e)
			}
			floatW, err := models.WeightsOf(float)
			if err != nil {
				t.Fatal(err)
			}
			floatRef, err := test.ref(floatW, in)
			if err != nil {
				t.Fatal(err)
			}
			e := relFrobenius(got, floatRef.Logits)
			t.Logf("RTN error: weights max %.4g rel %.4g, layer outputs %.4g; logits ‖Δ‖/‖·‖ = %.4g", rep.MaxAbsError, rep.RelError, rep.OutputRelError, e)
			if e > test.logitsB || e == 0 {
				t.Errorf("logits move by %.4g from the float model's, want within (0, %g]", e, test.logitsB)
			}
			if e > 5*rep.RelError {
				t.Errorf("logits move by %.4g, more than 5 times the weights' error %.4g", e, rep.RelError)
			}
		})
	}
}
