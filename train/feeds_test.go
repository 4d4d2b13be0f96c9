package train

import (
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	rt "github.com/peftonnx/peftonnx/runtime"
)

func TestPastShape(t *testing.T) {
	tests := []struct {
		name string
		in   rt.ValueInfo
		want []int64
		err  string
	}{
		{"llama", rt.ValueInfo{Name: "past_key_values.0.key", Shape: []int64{-1, 2, -1, 8}, DimParams: []string{"batch_size", "", "past_sequence_length", ""}}, []int64{3, 2, 0, 8}, ""},
		{"gpt2 stacked", rt.ValueInfo{Name: "past_0", Shape: []int64{2, -1, 2, -1, 2}, DimParams: []string{"", "batch", "", "past_seq_len", ""}}, []int64{2, 3, 2, 0, 2}, ""},
		{"anonymous", rt.ValueInfo{Name: "past_0", Shape: []int64{-1, 2, -1}, DimParams: []string{"", "", ""}}, nil, "cannot tell what dimension 0 is"},
		{"no past dim", rt.ValueInfo{Name: "past_0", Shape: []int64{-1, 2}, DimParams: []string{"batch", ""}}, nil, "no past-length dimension"},
		{"no shape", rt.ValueInfo{Name: "past_0"}, nil, "no declared shape"},
	}
	for i, tt := range tests {
		got, err := pastShape(tt.in, 3)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("unexpected result for test %d (%s): got %v, %v want %v", i, tt.name, got, err, tt.want)
		}
	}
}

func TestPlanFeeds(t *testing.T) {
	inputs := []rt.ValueInfo{
		{Name: "input_ids"}, {Name: "attention_mask"}, {Name: "position_ids"}, {Name: "labels"},
		{Name: "lora_training_mode", Optional: true}, {Name: "w.lora_A.weight"}, {Name: "past_key_values.0.key"},
		{Name: "scale", Optional: true},
	}
	plan, err := planFeeds(inputs, map[string]bool{"w.lora_A.weight": true})
	if err != nil {
		t.Fatal(err)
	}
	var got []feedKind
	for _, f := range plan {
		got = append(got, f.kind)
	}
	want := []feedKind{feedInputIDs, feedAttentionMask, feedPositionIDs, feedLabels, feedTraining, feedParam, feedPast}
	if !slices.Equal(got, want) {
		t.Errorf("unexpected plan: got %v want %v", got, want)
	}
	_, err = planFeeds(append(inputs, rt.ValueInfo{Name: "pixel_values", DType: dtype.Float32}), map[string]bool{"w.lora_A.weight": true})
	if err == nil || !strings.Contains(err.Error(), "input pixel_values") {
		t.Errorf("unknown required input: got %v", err)
	}
}
