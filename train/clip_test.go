package train

import (
	"math"
	"strings"
	"testing"
)

func TestClipGradNorm(t *testing.T) {
	tests := []struct {
		name     string
		grads    [][]float32
		maxNorm  float64
		wantNorm float64
		wantCoef float64 // expected multiplier of every gradient
	}{
		// Norm sqrt(9+16+144) = 13.
		{"clipped", [][]float32{{3, 4}, {12}}, 1, 13, 1 / (13 + 1e-6)},
		{"below max", [][]float32{{3, 4}, {12}}, 20, 13, 1},
		{"just above max", [][]float32{{3, 4}, {12}}, 12.5, 13, 12.5 / (13 + 1e-6)},
		{"off", [][]float32{{3, 4}, {12}}, 0, 13, 1},
		{"zero grads", [][]float32{{0, 0}, {0}}, 1, 0, 1},
		{"nan", [][]float32{{float32(math.NaN()), 1}, {1}}, 1, math.NaN(), 1},
	}
	for i, tt := range tests {
		var params []*Param
		for k, g := range tt.grads {
			p := NewParam(string(rune('a'+k)), []int64{int64(len(g))}, make([]float32, len(g)))
			copy(p.Grad, g)
			params = append(params, p)
		}
		norm := ClipGradNorm(params, tt.maxNorm)
		if !(math.IsNaN(tt.wantNorm) && math.IsNaN(norm)) && math.Abs(norm-tt.wantNorm) > 1e-5 {
			t.Errorf("unexpected norm for test %d (%s): got %v want %v", i, tt.name, norm, tt.wantNorm)
		}
		for k, g := range tt.grads {
			for j, v := range g {
				want := float64(v) * tt.wantCoef
				got := float64(params[k].Grad[j])
				if math.IsNaN(want) && math.IsNaN(got) {
					continue
				}
				if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
					t.Errorf("unexpected gradient for test %d (%s), param %d element %d: got %v want %v", i, tt.name, k, j, got, want)
				}
			}
		}
	}
}

func TestAccumulateGrad(t *testing.T) {
	p := NewParam("w", []int64{2}, []float32{0, 0})
	q := NewParam("b", []int64{1}, []float32{0})
	params := []*Param{p, q}
	micro := [][][]float32{{{1, 2}, {3}}, {{3, 6}, {-1}}}
	tests := []struct {
		name  string
		scale []float32
		want  [][]float32
	}{
		{"sum", []float32{1, 1}, [][]float32{{4, 8}, {2}}},
		{"mean", []float32{0.5, 0.5}, [][]float32{{2, 4}, {1}}},
		{"token weighted", []float32{0.25, 0.75}, [][]float32{{2.5, 5}, {0}}},
	}
	for i, tt := range tests {
		ZeroGrad(params)
		for k, g := range micro {
			if err := AccumulateGrad(params, g, tt.scale[k]); err != nil {
				t.Fatal(err)
			}
		}
		for k, want := range tt.want {
			for j := range want {
				if got := params[k].Grad[j]; got != want[j] {
					t.Errorf("unexpected result for test %d (%s), param %d element %d: got %v want %v", i, tt.name, k, j, got, want[j])
				}
			}
		}
	}
	if err := AccumulateGrad(params, [][]float32{{1, 2}}, 1); err == nil || !strings.Contains(err.Error(), "1 gradients for 2 parameters") {
		t.Errorf("count mismatch: got %v", err)
	}
	if err := AccumulateGrad(params, [][]float32{{1}, {1}}, 1); err == nil || !strings.Contains(err.Error(), `gradient of "w" has 1 values`) {
		t.Errorf("length mismatch: got %v", err)
	}
}
