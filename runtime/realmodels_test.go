package runtime_test

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
	"google.golang.org/protobuf/proto"
)

// initializerFloats reads a float32 initializer of the model at path.
func initializerFloats(t *testing.T, path, name string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, init := range m.GetGraph().GetInitializer() {
		if init.GetName() != name {
			continue
		}
		if f := init.GetFloatData(); len(f) > 0 {
			return f
		}
		raw := init.GetRawData()
		f := make([]float32, len(raw)/4)
		for i := range f {
			f[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		}
		return f
	}
	t.Fatalf("%s has no initializer %s", path, name)
	return nil
}

func matMul32(x, w []float32, n, k, m int) []float32 {
	y := make([]float32, n*m)
	for i := range n {
		for j := range m {
			var s float32
			for l := range k {
				s += x[i*k+l] * w[l*m+j]
			}
			y[i*m+j] = s
		}
	}
	return y
}

func close32(a, b []float32, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > tol*(1+math.Abs(float64(b[i]))) {
			return false
		}
	}
	return true
}

// TestLoRAInputsModel runs ONNX Runtime's own "adapters as inputs" test
// model: output = input·W + input·A·B, where A [4,r] and B [r,4] are inputs
// whose defaults have r = 0, so that with nothing fed the model is the base.
func TestLoRAInputsModel(t *testing.T) {
	requireORT(t)
	path := sharedModel(t, "lora-inputs-ort/model.onnx")
	s, err := rt.NewSession(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := s.Inputs()
	want := []rt.ValueInfo{
		{Name: "input", DType: dtype.Float32, Shape: []int64{4, 4}},
		{Name: "lora_param_a", DType: dtype.Float32, Shape: []int64{4, -1}, Optional: true},
		{Name: "lora_param_b", DType: dtype.Float32, Shape: []int64{-1, 4}, Optional: true},
	}
	if len(in) != len(want) {
		t.Fatalf("inputs %v, want %v", in, want)
	}
	for i := range in {
		if in[i].Name != want[i].Name || in[i].DType != want[i].DType ||
			!slices.Equal(in[i].Shape, want[i].Shape) || in[i].Optional != want[i].Optional {
			t.Errorf("input %d: got %+v, want %+v", i, in[i], want[i])
		}
	}
	w := initializerFloats(t, path, "weight_x")
	x := make([]float32, 16)
	for i := range x {
		x[i] = float32(i)*0.25 - 1
	}
	input := must(rt.NewFloat32([]int64{4, 4}, x))
	base := matMul32(x, w, 4, 4, 4)

	out, err := s.Run(map[string]*rt.Tensor{"input": input}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := out["output"].Float32(); !close32(got, base, 1e-6) {
		t.Errorf("no adapter: output %v, want the base %v", got, base)
	}
	// Adapters of rank 2 and 3, switched per run on one session.
	for _, r := range []int{2, 3, 0} {
		a := make([]float32, 4*r)
		bb := make([]float32, r*4)
		for i := range a {
			a[i] = float32(i%5) * 0.1
		}
		for i := range bb {
			bb[i] = float32(i%3) - 1
		}
		out, err := s.Run(map[string]*rt.Tensor{
			"input":        input,
			"lora_param_a": must(rt.NewFloat32([]int64{4, int64(r)}, a)),
			"lora_param_b": must(rt.NewFloat32([]int64{int64(r), 4}, bb)),
		}, []string{"output"})
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
		want := base
		if r > 0 {
			delta := matMul32(matMul32(x, a, 4, 4, r), bb, 4, r, 4)
			want = make([]float32, 16)
			for i := range want {
				want[i] = base[i] + delta[i]
			}
		}
		if got := out["output"].Float32(); !close32(got, want, 1e-5) {
			t.Errorf("rank %d: output %v, want %v", r, got, want)
		}
	}
}

// TestDistilBERT runs an Optimum export with dynamic batch and sequence
// dimensions, and checks that a batch gives the rows that single runs give.
func TestDistilBERT(t *testing.T) {
	requireORT(t)
	path := sharedModel(t, "distilbert-optimum/model.onnx")
	s, err := rt.NewSession(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var names []string
	for _, v := range s.Inputs() {
		names = append(names, v.String())
	}
	if got, want := strings.Join(names, ", "), "input_ids int64[batch sequence], attention_mask int64[batch sequence]"; got != want {
		t.Errorf("inputs: got %s, want %s", got, want)
	}
	rows := [][]int64{{101, 7592, 2088, 102, 0}, {101, 2023, 2003, 1037, 102}}
	masks := [][]int64{{1, 1, 1, 1, 0}, {1, 1, 1, 1, 1}}
	var single [][]float32
	for i := range rows {
		out, err := s.Run(map[string]*rt.Tensor{
			"input_ids":      must(rt.NewInt64([]int64{1, 5}, rows[i])),
			"attention_mask": must(rt.NewInt64([]int64{1, 5}, masks[i])),
		}, []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		logits := out["logits"]
		if !slices.Equal(logits.Shape(), []int64{1, 2}) {
			t.Fatalf("logits shape %v, want [1 2]", logits.Shape())
		}
		single = append(single, logits.Float32())
	}
	out, err := s.Run(map[string]*rt.Tensor{
		"input_ids":      must(rt.NewInt64([]int64{2, 5}, slices.Concat(rows...))),
		"attention_mask": must(rt.NewInt64([]int64{2, 5}, slices.Concat(masks...))),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	logits := out["logits"]
	if !slices.Equal(logits.Shape(), []int64{2, 2}) {
		t.Fatalf("batched logits shape %v, want [2 2]", logits.Shape())
	}
	for i := range rows {
		if got := logits.Float32()[2*i : 2*i+2]; !close32(got, single[i], 1e-5) {
			t.Errorf("row %d: batched %v, single %v", i, got, single[i])
		}
	}
	for _, v := range logits.Float32() {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logits %v are not finite", logits.Float32())
		}
	}
	// A shorter sequence on the same session.
	out, err = s.Run(map[string]*rt.Tensor{
		"input_ids":      must(rt.NewInt64([]int64{1, 3}, []int64{101, 7592, 102})),
		"attention_mask": must(rt.NewInt64([]int64{1, 3}, []int64{1, 1, 1})),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out["logits"].Shape(), []int64{1, 2}) {
		t.Errorf("sequence 3: logits shape %v", out["logits"].Shape())
	}
}

// TestTinyLlamaFP16 runs a float16 LLaMA with its weights in external data,
// float16 outputs of dynamic shape and an empty KV cache, then decodes one
// more token from the cache and compares with a full run.
func TestTinyLlamaFP16(t *testing.T) {
	requireORT(t)
	path := sharedModel(t, "tiny-llama-genai-fp16/model.onnx")
	s, err := rt.NewSession(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	feeds := func(ids []int64, past map[string]*rt.Tensor, pastLen int) map[string]*rt.Tensor {
		n := int64(len(ids))
		total := int64(pastLen) + n
		mask := make([]int64, total)
		pos := make([]int64, n)
		for i := range mask {
			mask[i] = 1
		}
		for i := range pos {
			pos[i] = int64(pastLen + i)
		}
		in := map[string]*rt.Tensor{
			"input_ids":      must(rt.NewInt64([]int64{1, n}, ids)),
			"attention_mask": must(rt.NewInt64([]int64{1, total}, mask)),
			"position_ids":   must(rt.NewInt64([]int64{1, n}, pos)),
		}
		for _, v := range s.Inputs() {
			if strings.HasPrefix(v.Name, "past_key_values.") {
				p := past[strings.Replace(v.Name, "past_key_values.", "present.", 1)]
				if p == nil {
					p = must(rt.NewFloat16([]int64{1, v.Shape[1], 0, v.Shape[3]}, nil))
				}
				in[v.Name] = p
			}
		}
		return in
	}
	ids := []int64{1, 450, 4996, 17354}
	full, err := s.Run(feeds(ids, nil, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	logits := full["logits"]
	if logits.DType() != dtype.Float16 || !slices.Equal(logits.Shape(), []int64{1, 4, 32000}) {
		t.Fatalf("logits %v, want float16[1 4 32000]", logits)
	}
	if p := full["present.0.key"]; p == nil || !slices.Equal(p.Shape(), []int64{1, 1, 4, 16}) {
		t.Fatalf("present.0.key %v, want float16[1 1 4 16]", p)
	}
	prefix, err := s.Run(feeds(ids[:3], nil, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	next, err := s.Run(feeds(ids[3:], prefix, 3), []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	got := next["logits"].ToFloat32()
	want := logits.ToFloat32()[3*32000:]
	if !close32(got, want, 2e-2) {
		t.Errorf("logits of token 4 from the cache differ from the full run: got %v..., want %v...", got[:4], want[:4])
	}
}
