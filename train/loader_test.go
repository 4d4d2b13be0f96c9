package train

import (
	"slices"
	"strings"
	"testing"
)

func numberedDataset(n int) *Dataset {
	d := &Dataset{Path: "mem"}
	for i := range n {
		d.Examples = append(d.Examples, Example{InputIDs: []int64{int64(i)}, Labels: []int64{int64(i)}, Line: i + 1})
	}
	return d
}

// batchIDs returns the first token of each row: the example's number.
func batchIDs(b Batch) []int64 {
	out := make([]int64, b.Size)
	for r := range out {
		out[r] = b.InputIDs[r*b.SeqLen]
	}
	return out
}

func TestLoaderBatches(t *testing.T) {
	d := numberedDataset(5)
	tests := []struct {
		name string
		opts LoaderOptions
		want [][]int64 // epoch 0
	}{
		{"in order", LoaderOptions{BatchSize: 2}, [][]int64{{0, 1}, {2, 3}, {4}}},
		{"drop last", LoaderOptions{BatchSize: 2, DropLast: true}, [][]int64{{0, 1}, {2, 3}}},
		{"one batch", LoaderOptions{BatchSize: 8}, [][]int64{{0, 1, 2, 3, 4}}},
	}
	for i, tt := range tests {
		l, err := NewLoader(d, tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		if l.NumBatches() != len(tt.want) {
			t.Errorf("test %d (%s): got %d batches want %d", i, tt.name, l.NumBatches(), len(tt.want))
			continue
		}
		for k, w := range tt.want {
			if got := batchIDs(l.Batch(0, k)); !slices.Equal(got, w) {
				t.Errorf("unexpected result for test %d (%s), batch %d: got %v want %v", i, tt.name, k, got, w)
			}
		}
	}
}

func TestLoaderShuffle(t *testing.T) {
	d := numberedDataset(50)
	mk := func(seed uint64) *Loader {
		l, err := NewLoader(d, LoaderOptions{BatchSize: 4, Shuffle: true, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b, c := mk(1), mk(1), mk(2)
	if !slices.Equal(a.Order(0), b.Order(0)) || !slices.Equal(a.Order(3), b.Order(3)) {
		t.Errorf("the same seed gave different orders")
	}
	if slices.Equal(a.Order(0), a.Order(1)) {
		t.Errorf("epochs 0 and 1 have the same order")
	}
	if slices.Equal(a.Order(0), c.Order(0)) {
		t.Errorf("seeds 1 and 2 give the same order")
	}
	// Asking for epoch 3 first, then 0, gives what a fresh loader gives:
	// each epoch's order depends on nothing else.
	fresh := mk(1)
	_ = a.Order(3)
	if !slices.Equal(a.Order(0), fresh.Order(0)) {
		t.Errorf("order of epoch 0 depends on earlier calls")
	}
	seen := map[int64]bool{}
	for k := range a.NumBatches() {
		for _, id := range batchIDs(a.Batch(2, k)) {
			if seen[id] {
				t.Errorf("example %d twice in epoch 2", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 50 {
		t.Errorf("epoch 2 visits %d of 50 examples", len(seen))
	}
}

func TestLoaderErrors(t *testing.T) {
	tests := []struct {
		name string
		d    *Dataset
		opts LoaderOptions
		want string
	}{
		{"batch size", numberedDataset(3), LoaderOptions{}, "batch size 0"},
		{"seq len", numberedDataset(3), LoaderOptions{BatchSize: 1, SeqLen: -1}, "sequence length -1"},
		{"pad without len", numberedDataset(3), LoaderOptions{BatchSize: 1, PadToSeqLen: true}, "needs a sequence length"},
		{"drop everything", numberedDataset(3), LoaderOptions{BatchSize: 4, DropLast: true}, "fewer than one batch of 4"},
		{"empty", &Dataset{}, LoaderOptions{BatchSize: 1}, "no examples"},
	}
	for i, tt := range tests {
		_, err := NewLoader(tt.d, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.want)
		}
	}
}
