package train

import (
	"slices"
	"testing"
)

func TestCollate(t *testing.T) {
	exs := []Example{
		{InputIDs: []int64{1, 2, 3, 4}, Labels: []int64{-100, 2, 3, 4}},
		{InputIDs: []int64{5, 6}, Labels: []int64{5, 6}},
	}
	tests := []struct {
		name        string
		seqLen      int
		padToSeqLen bool
		want        Batch
	}{
		{"pad to longest", 0, false, Batch{Size: 2, SeqLen: 4,
			InputIDs:      []int64{1, 2, 3, 4, 5, 6, 9, 9},
			Labels:        []int64{-100, 2, 3, 4, 5, 6, -100, -100},
			AttentionMask: []int64{1, 1, 1, 1, 1, 1, 0, 0}}},
		{"truncate", 3, false, Batch{Size: 2, SeqLen: 3,
			InputIDs:      []int64{1, 2, 3, 5, 6, 9},
			Labels:        []int64{-100, 2, 3, 5, 6, -100},
			AttentionMask: []int64{1, 1, 1, 1, 1, 0}}},
		{"pad to seq len", 5, true, Batch{Size: 2, SeqLen: 5,
			InputIDs:      []int64{1, 2, 3, 4, 9, 5, 6, 9, 9, 9},
			Labels:        []int64{-100, 2, 3, 4, -100, 5, 6, -100, -100, -100},
			AttentionMask: []int64{1, 1, 1, 1, 0, 1, 1, 0, 0, 0}}},
		{"seq len above longest", 8, false, Batch{Size: 2, SeqLen: 4,
			InputIDs:      []int64{1, 2, 3, 4, 5, 6, 9, 9},
			Labels:        []int64{-100, 2, 3, 4, 5, 6, -100, -100},
			AttentionMask: []int64{1, 1, 1, 1, 1, 1, 0, 0}}},
	}
	for i, tt := range tests {
		got := Collate(exs, tt.seqLen, 9, tt.padToSeqLen)
		if got.Size != tt.want.Size || got.SeqLen != tt.want.SeqLen ||
			!slices.Equal(got.InputIDs, tt.want.InputIDs) || !slices.Equal(got.Labels, tt.want.Labels) ||
			!slices.Equal(got.AttentionMask, tt.want.AttentionMask) {
			t.Errorf("unexpected result for test %d (%s):\ngot  %+v\nwant %+v", i, tt.name, got, tt.want)
		}
	}
}

func TestBatchCounts(t *testing.T) {
	b := Collate([]Example{
		{InputIDs: []int64{1, 2, 3, 4}, Labels: []int64{-100, 2, 3, 4}},
		{InputIDs: []int64{5, 6}, Labels: []int64{5, 6}},
	}, 0, 0, false)
	tests := []struct {
		shift bool
		want  int
	}{
		{false, 5}, // 2,3,4 and 5,6
		{true, 4},  // 2,3,4 and 6: each row's first label has no prediction
	}
	for i, tt := range tests {
		if got := b.LabelTokens(tt.shift); got != tt.want {
			t.Errorf("unexpected result for test %d (shift %v): got %d want %d", i, tt.shift, got, tt.want)
		}
	}
	if got, want := b.PositionIDs(), []int64{0, 1, 2, 3, 0, 1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("PositionIDs: got %v want %v", got, want)
	}
}
