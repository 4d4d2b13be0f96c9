package train

import (
	"bytes"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
)

// TestUpcast converts a float16 LLaMA to float32 in a clone: the clone
// holds no 16-bit type and computes what the original does, and the
// original keeps its bytes.
func TestUpcast(t *testing.T) {
	requireORT(t)
	c := models.LlamaMini() // weights large enough to stay 16-bit behind a Cast
	c.DType, c.NoCache = dtype.Float16, true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	before := tensorBytes(t, m)
	if !hasHalf(m) {
		t.Fatal("a float16 model has no 16-bit type")
	}
	up := m.Clone()
	if err := upcast(up, nil); err != nil {
		t.Fatal(err)
	}
	// Nothing computes in 16 bits: every 16-bit tensor left is a large
	// frozen initializer whose one consumer casts it to float32.
	kept := 0
	for _, init := range up.Graph().Initializer {
		if !isHalf(graph.TypeOf(init)) {
			continue
		}
		kept++
		cs := up.Consumers(init.Name)
		if len(cs) != 1 || cs[0].OpType != "Cast" || graph.IntAttr(cs[0], "to", 0) != int64(dtype.Float32) {
			t.Errorf("16-bit initializer %s is not read through one Cast to float32", init.Name)
		}
	}
	if kept == 0 {
		t.Error("no frozen weight was left in 16 bits behind a Cast")
	}
	walkTypes(up.Graph(), func(et dtype.Type) dtype.Type {
		if isHalf(et) {
			t.Errorf("the upcast model declares a %s value", et)
		}
		return et
	}, func(*onnxpb.TensorProto) {})
	for name, b := range tensorBytes(t, m) {
		if !bytes.Equal(b, before[name]) {
			t.Errorf("upcasting a clone changed the original's %s", name)
		}
	}
	if err := up.Validate(); err != nil {
		t.Fatal(err)
	}
	b := Collate([]Example{{InputIDs: []int64{1, 5, 9, 3}, Labels: []int64{1, 5, 9, 3}}}, 0, 0, false)
	logits := map[bool][]float32{}
	for _, f32 := range []bool{false, true} {
		mm := m
		if f32 {
			mm = up
		}
		s, err := NewSession(mm)
		if err != nil {
			t.Fatal(err)
		}
		r, err := newRunner(s, nil, []string{"logits"}, CausalLM, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.run(nil, b, false)
		if err != nil {
			t.Fatal(err)
		}
		logits[f32] = out["logits"].ToFloat32()
		r.close()
	}
	for i, want := range logits[true] {
		if d := logits[false][i] - want; d > 1e-2 || d < -1e-2 {
			t.Fatalf("logit %d: float16 %v, float32 copy %v", i, logits[false][i], want)
		}
	}
}
