package runtime

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestArgmax(t *testing.T) {
	tests := []struct {
		scores []float32
		want   int64
	}{
		{[]float32{1, 3, 2}, 1},
		{[]float32{-1, -1, -2}, 0},
		{[]float32{0, 5, 5, 1}, 1},
		{[]float32{float32(math.Inf(-1)), -3}, 1},
	}
	for i, tc := range tests {
		if got, err := argmax(tc.scores); err != nil || got != tc.want {
			t.Errorf("unexpected result for test %d: got %d, %v want %d", i, got, err, tc.want)
		}
	}
	if _, err := argmax([]float32{1, float32(math.NaN())}); !errors.Is(err, errNaNLogits) {
		t.Errorf("NaN logits: got error %v", err)
	}
}

func TestTopK(t *testing.T) {
	scores := []float32{0.5, 3, -1, 3, 2, 0.5}
	tests := []struct {
		k    int
		want []int32
	}{
		{1, []int32{1}},
		{2, []int32{1, 3}},
		{3, []int32{1, 3, 4}},
		{5, []int32{1, 3, 4, 0, 5}},
		{6, []int32{1, 3, 4, 0, 5, 2}},
	}
	for _, tc := range tests {
		var ids []int32
		for _, c := range topK(nil, scores, tc.k) {
			ids = append(ids, c.id)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("top %d: got %v want %v", tc.k, ids, tc.want)
		}
	}
}

func TestPenalize(t *testing.T) {
	logits := []float32{2, -2, 4, -1, 1}
	scores := slices.Clone(logits)
	penalize(scores, []int64{0, 1, 0, 3, 3, 99}, 2, logits)
	if want := []float32{1, -4, 4, -2, 1}; !slices.Equal(scores, want) {
		t.Errorf("got %v want %v", scores, want)
	}
}

// TestSampleFrequencies draws many tokens and compares their frequencies
// with the distribution that the options describe.
func TestSampleFrequencies(t *testing.T) {
	logits := []float32{0, float32(math.Log(2)), float32(math.Log(4)), float32(math.Log(1)), float32(math.Log(8))}
	// Probabilities at temperature 1: 1, 2, 4, 1, 8 over 16.
	tests := []struct {
		name string
		o    GenerateOptions
		want []float64
	}{
		{"temperature 1", GenerateOptions{Temperature: 1}, []float64{1. / 16, 2. / 16, 4. / 16, 1. / 16, 8. / 16}},
		{"temperature 2", GenerateOptions{Temperature: 2}, normalized([]float64{1, math.Sqrt2, 2, 1, math.Sqrt(8)})},
		{"top-k 2", GenerateOptions{Temperature: 1, TopK: 2}, []float64{0, 0, 1. / 3, 0, 2. / 3}},
		{"top-p 0.7", GenerateOptions{Temperature: 1, TopP: 0.7}, []float64{0, 0, 1. / 3, 0, 2. / 3}},
		{"top-p 0.75", GenerateOptions{Temperature: 1, TopP: 0.75}, []float64{0, 0, 1. / 3, 0, 2. / 3}},
		{"top-p 0.8", GenerateOptions{Temperature: 1, TopP: 0.8}, []float64{0, 2. / 14, 4. / 14, 0, 8. / 14}},
		{"top-k 3, top-p 0.5", GenerateOptions{Temperature: 1, TopK: 3, TopP: 0.5}, []float64{0, 0, 0, 0, 1}},
	}
	const draws = 40000
	for _, tc := range tests {
		o, err := tc.o.normalize()
		if err != nil {
			t.Fatal(err)
		}
		s := newSampler(o)
		counts := make([]float64, len(logits))
		for range draws {
			id, err := s.pick(logits, nil)
			if err != nil {
				t.Fatal(err)
			}
			counts[id]++
		}
		for i := range counts {
			got := counts[i] / draws
			if math.Abs(got-tc.want[i]) > 0.01 || (tc.want[i] == 0) != (got == 0) {
				t.Errorf("%s: token %d drawn with frequency %.4f, want %.4f", tc.name, i, got, tc.want[i])
			}
		}
	}
}

func normalized(w []float64) []float64 {
	sum := 0.0
	for _, v := range w {
		sum += v
	}
	out := make([]float64, len(w))
	for i, v := range w {
		out[i] = v / sum
	}
	return out
}

func TestSampleSeeded(t *testing.T) {
	logits := make([]float32, 100)
	for i := range logits {
		logits[i] = float32(i%7) * 0.3
	}
	draw := func(seed uint64) []int64 {
		s := newSampler(GenerateOptions{Temperature: 1, TopP: 1, RepetitionPenalty: 1, Seed: seed})
		var ids []int64
		for range 20 {
			id, err := s.pick(logits, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	if a, b := draw(7), draw(7); !slices.Equal(a, b) {
		t.Errorf("seed 7 gave %v, then %v", a, b)
	}
	if a, b := draw(7), draw(8); slices.Equal(a, b) {
		t.Errorf("seeds 7 and 8 both gave %v", a)
	}
}
