package runtime_test

import (
	"math"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestRunValues runs a classifier whose outputs are a float tensor, a
// string tensor and a ZipMap sequence of maps: Run returns the tensor
// only, RunValues also the labels and the maps, which agree with the
// scores.
func TestRunValues(t *testing.T) {
	requireORT(t)
	m, err := models.NonTensorOutputs(models.NonTensorConfig{Scores: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x, _ := rt.NewFloat32([]int64{2, 3}, []float32{0.1, 2, -1, 3, 0, 1})
	feeds := map[string]*rt.Tensor{"x": x}
	res, err := s.Run(feeds, nil)
	if err != nil || len(res) != 1 || res["scores"] == nil {
		t.Fatalf("Run: %v, %v; want scores alone", res, err)
	}
	tensors, values, err := s.RunValues(feeds)
	if err != nil {
		t.Fatal(err)
	}
	scores := tensors["scores"].Float32()
	label, probs := values["label"], values["probabilities"]
	if label == nil || !slices.Equal(label.Strings, []string{"1", "0"}) || !slices.Equal(label.Shape, []int64{2}) {
		t.Fatalf("label: %+v", label)
	}
	if probs == nil || len(probs.Elems) != 2 {
		t.Fatalf("probabilities: %+v", probs)
	}
	for row, e := range probs.Elems {
		if e.Keys == nil || e.Keys.Tensor.DType() != dtype.Int64 || !slices.Equal(e.Keys.Tensor.Int64(), []int64{0, 1, 2}) {
			t.Fatalf("row %d: keys %+v", row, e.Keys)
		}
		for j, p := range e.Values.Tensor.Float32() {
			if math.Abs(float64(p-scores[row*3+j])) > 1e-7 {
				t.Errorf("row %d class %d: %v, scores say %v", row, j, p, scores[row*3+j])
			}
		}
	}
}
