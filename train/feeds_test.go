package train

import (
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestZerosShape checks the shapes of the inputs that a batch feeds with
// zeros: an empty KV cache, a zero state.
func TestZerosShape(t *testing.T) {
	tests := []struct {
		name string
		in   rt.ValueInfo
		want []int64
		err  string
	}{
		{"llama", rt.ValueInfo{Name: "past_key_values.0.key", DType: dtype.Float32, Shape: []int64{-1, 2, -1, 8}, DimParams: []string{"batch_size", "", "past_sequence_length", ""}}, []int64{3, 2, 0, 8}, ""},
		{"gpt2 stacked", rt.ValueInfo{Name: "past_0", DType: dtype.Float32, Shape: []int64{2, -1, 2, -1, 2}, DimParams: []string{"", "batch", "", "past_seq_len", ""}}, []int64{2, 3, 2, 0, 2}, ""},
		{"conv state", rt.ValueInfo{Name: "past_conv.0", DType: dtype.Float32, Shape: []int64{-1, 32, 4}, DimParams: []string{"batch_size", "", ""}}, []int64{3, 32, 4}, ""},
		{"state, anonymous batch", rt.ValueInfo{Name: "past_0", DType: dtype.Float32, Shape: []int64{-1, 2}, DimParams: []string{"", ""}}, []int64{3, 2}, ""},
		{"unsized", rt.ValueInfo{Name: "past_0", DType: dtype.Float32, Shape: []int64{-1, 2, -1}, DimParams: []string{"batch", "", ""}}, nil, "cannot tell the size of dimension 2"},
		{"no shape", rt.ValueInfo{Name: "past_0", DType: dtype.Float32}, nil, "no declared shape"},
	}
	for i, tt := range tests {
		plan, err := planFeeds([]rt.ValueInfo{tt.in}, nil, nil, nil)
		if err != nil {
			t.Fatalf("test %d (%s): %v", i, tt.name, err)
		}
		if len(plan) != 1 || plan[0].kind != feedZeros {
			t.Fatalf("test %d (%s): got plan %+v, want one input fed zeros", i, tt.name, plan)
		}
		got, err := batchValues(plan[0], Batch{Size: 3, SeqLen: 5}, CausalLM, nil)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("test %d (%s): got error %v, want one containing %q", i, tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got.shape, tt.want) || got.ints != nil || got.floats != nil {
			t.Errorf("unexpected result for test %d (%s): got %+v, %v want zeros of %v", i, tt.name, got, err, tt.want)
		}
	}
}

func TestPlanFeeds(t *testing.T) {
	i32 := dtype.Int32
	inputs := []rt.ValueInfo{
		{Name: "input_ids", DType: i32}, {Name: "input_mask", DType: i32}, {Name: "position_ids"}, {Name: "labels"},
		{Name: "lora_training_mode", Optional: true}, {Name: "w.lora_A.weight"}, {Name: "past_key_values.0.key", DType: dtype.Float32},
		{Name: "scale", Optional: true}, {Name: "segment_ids", DType: i32, Shape: []int64{-1, -1}, DimParams: []string{"b", "s"}},
		{Name: "features", DType: dtype.Float32, Shape: []int64{-1, 4}, DimParams: []string{"b", ""}},
	}
	plan, err := planFeeds(inputs, nil, map[string]bool{"w.lora_A.weight": true}, []string{"features", "segment_ids", "unrelated"})
	if err != nil {
		t.Fatal(err)
	}
	var got []feedKind
	for _, f := range plan {
		got = append(got, f.kind)
	}
	want := []feedKind{feedIDs, feedMask, feedPositions, feedLabels, feedTraining, feedParam, feedZeros, feedField, feedField}
	if !slices.Equal(got, want) {
		t.Errorf("unexpected plan: got %v want %v", got, want)
	}
	if f := plan[7]; f.field != "segment_ids" || !f.perToken {
		t.Errorf("segment_ids: got field %q per token %v, want the data's segment_ids, per token", f.field, f.perToken)
	}
	if f := plan[8]; f.field != "features" || f.perToken {
		t.Errorf("features: got field %q per token %v, want the data's features, per example", f.field, f.perToken)
	}
	// The HF name of a role feeds the model's input of that role, unless
	// a field of the input's own name is there too.
	plan, err = planFeeds(inputs[:2], nil, nil, []string{"attention_mask"})
	if err != nil || plan[1].kind != feedField || plan[1].field != "attention_mask" {
		t.Errorf("attention_mask for input_mask: got %+v, %v", plan, err)
	}
	plan, err = planFeeds(inputs[:2], nil, nil, []string{"attention_mask", "input_mask"})
	if err != nil || plan[1].field != "input_mask" {
		t.Errorf("attention_mask and input_mask for input_mask: got %+v, %v", plan, err)
	}
	for _, tc := range []struct {
		in   rt.ValueInfo
		want string
	}{
		{rt.ValueInfo{Name: "pixel_values", DType: dtype.Float32}, `input pixel_values float32[?] that the data does not give and that has no default: give it as a JSONL field "pixel_values"`},
		{rt.ValueInfo{Name: "past_key_cross_0", DType: dtype.Float32, Shape: []int64{-1, 2, -1, 4}, DimParams: []string{"batch", "", "enc", ""}}, "is a cross-attention cache"},
	} {
		_, err = planFeeds(append(inputs, tc.in), nil, map[string]bool{"w.lora_A.weight": true}, []string{"features", "segment_ids"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("input %s: got %v, want %q", tc.in.Name, err, tc.want)
		}
	}
}
