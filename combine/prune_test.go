package combine

import (
	"slices"
	"testing"
)

// TestPruneMagnitude checks PEFT's count, int(density·n) truncated as
// Python's int() does on the float product, and that among equal
// magnitudes the earlier value is kept.
func TestPruneMagnitude(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // descending: the first k are kept
	}
	for _, test := range []struct {
		reason  string
		t       []float64
		density float64
		kept    int // leading values of hundred kept, when t is hundred
		want    []float64
	}{
		{reason: "ties keep the earlier", t: []float64{2, -2, 1, -2}, density: 0.5, want: []float64{2, -2, 0, 0}},
		{reason: "one of three", t: []float64{-1, 3, -3}, density: 0.34, want: []float64{0, 3, 0}},
		{reason: "density 1 keeps all", t: []float64{1, -2}, density: 1, want: []float64{1, -2}},
		{reason: "fewer than one", t: []float64{1, -2, 3}, density: 0.2, want: []float64{0, 0, 0}},
		{reason: "0.29·100 is 28.999…: 28 kept", t: hundred, density: 0.29, kept: 28},
		{reason: "0.57·100 is 56.999…: 56 kept", t: hundred, density: 0.57, kept: 56},
		{reason: "0.7·100 is 70: 70 kept", t: hundred, density: 0.7, kept: 70},
	} {
		got := pruneMagnitude(test.t, test.density)
		want := test.want
		if want == nil {
			want = make([]float64, len(test.t))
			copy(want, test.t[:test.kept])
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", test.reason, got, want)
		}
	}
}
