package train

import (
	"slices"
	"testing"
)

func TestRNGReference(t *testing.T) {
	// SplitMix64's published test vector for seed 1234567.
	want := []uint64{6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821}
	r := NewRNG(1234567)
	for i, w := range want {
		if got := r.Uint64(); got != w {
			t.Errorf("unexpected result for output %d: got %d want %d", i, got, w)
		}
	}
}

func TestRNGStateAndRanges(t *testing.T) {
	r := NewRNG(7)
	r.Uint64()
	s := r.State()
	a := []uint64{r.Uint64(), r.Uint64()}
	r.SetState(s)
	if b := []uint64{r.Uint64(), r.Uint64()}; !slices.Equal(a, b) {
		t.Errorf("after SetState: got %v want %v", b, a)
	}
	counts := make([]int, 3)
	for range 3000 {
		n := r.Intn(3)
		counts[n]++
		if f := r.Float64(); f < 0 || f >= 1 {
			t.Fatalf("Float64 out of [0,1): %v", f)
		}
	}
	for i, c := range counts {
		if c < 850 || c > 1150 {
			t.Errorf("Intn(3) bucket %d: %d of 3000 draws", i, c)
		}
	}
	tests := []int{0, 1, 2, 10, 97}
	for i, n := range tests {
		p := NewRNG(uint64(n)).Perm(n)
		s := slices.Clone(p)
		slices.Sort(s)
		for k := range s {
			if s[k] != k {
				t.Errorf("test %d: Perm(%d) = %v is not a permutation", i, n, p)
				break
			}
		}
	}
}
