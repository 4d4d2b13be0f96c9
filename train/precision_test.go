package train

import (
	"bytes"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// TestUpcast converts a float16 LLaMA to float32 in a clone: the clone
// holds no 16-bit type and computes what the original does, and the
// original keeps its bytes.
func TestUpcast(t *testing.T) {
	requireORT(t)
	c := models.LlamaTiny()
	c.DType, c.NoCache = graph.Float16, true
	m, err := models.Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	before := tensorBytes(t, m)
	if !hasHalf(m) {
		t.Fatal("a float16 model has no 16-bit type")
	}
	up := m.Clone()
	if err := upcast(up); err != nil {
		t.Fatal(err)
	}
	if hasHalf(up) {
		t.Errorf("the upcast model still has a 16-bit type")
	}
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
