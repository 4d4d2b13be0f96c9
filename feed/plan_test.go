package feed

import (
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// in declares an input: dims are sizes, or names of dynamic dims ("?" for
// an anonymous one).
func in(name string, dt dtype.Type, dims ...any) Input {
	v := Input{Name: name, DType: dt, Shape: []int64{}, DimParams: []string{}}
	for _, d := range dims {
		switch x := d.(type) {
		case int:
			v.Shape = append(v.Shape, int64(x))
			v.DimParams = append(v.DimParams, "")
		case string:
			v.Shape = append(v.Shape, -1)
			if x == "?" {
				x = ""
			}
			v.DimParams = append(v.DimParams, x)
		}
	}
	return v
}

func TestClassify(t *testing.T) {
	f32, i64, i32 := dtype.Float32, dtype.Int64, dtype.Int32
	tests := []struct {
		reason  string
		inputs  []Input
		outputs []Input
		// want lists, per input, role/layer/present/batch axis/length axis.
		want []Slot
	}{
		{"onnxruntime-genai llama",
			[]Input{in("input_ids", i64, "batch_size", "sequence_length"), in("attention_mask", i64, "batch_size", "total_sequence_length"),
				in("position_ids", i64, "batch_size", "sequence_length"), in("past_key_values.0.key", dtype.Float16, "batch_size", 1, "past_sequence_length", 16)},
			[]Input{in("logits", dtype.Float16, "batch_size", "sequence_length", 32000), in("present.0.key", dtype.Float16, "batch_size", 1, "total_sequence_length", 16)},
			[]Slot{{Role: TokenIDs, Layer: -1, BatchAxis: 0, LengthAxis: 1}, {Role: AttentionMask, Layer: -1, BatchAxis: 0, LengthAxis: 1},
				{Role: Positions, Layer: -1, BatchAxis: 0, LengthAxis: 1}, {Role: Cache, Layer: 0, Present: "present.0.key", BatchAxis: 0, LengthAxis: 2}}},
		{"keras BERT with TF suffixes",
			[]Input{in("input_ids:0", i32, "?", 128), in("input_mask:0", i32, "?", 128), in("segment_ids:0", i32, "?", 128)}, nil,
			[]Slot{{Role: TokenIDs, Layer: -1, BatchAxis: 0, LengthAxis: 1}, {Role: AttentionMask, Layer: -1, BatchAxis: 0, LengthAxis: 1},
				{Role: TokenTypes, Layer: -1, BatchAxis: 0, LengthAxis: 1}}},
		{"TF hub BERT",
			[]Input{in("input_word_ids", i32, "batch", "seq"), in("input_type_ids", i32, "batch", "seq")}, nil,
			[]Slot{{Role: TokenIDs, Layer: -1, BatchAxis: 0, LengthAxis: 1}, {Role: TokenTypes, Layer: -1, BatchAxis: 0, LengthAxis: 1}}},
		{"stacked GPT-2, anonymous dims",
			[]Input{in("past_3", f32, 2, "?", 2, "?", 2)}, []Input{in("present_3", f32, 2, "?", 2, "?", 2)},
			[]Slot{{Role: Cache, Layer: 3, Present: "present_3", BatchAxis: 1, LengthAxis: 3}}},
		{"a single past for every layer",
			[]Input{in("past", f32, 4, "batch", 2, "past_len", 8)}, []Input{in("present", f32, 4, "batch", 2, "total_len", 8)},
			[]Slot{{Role: Cache, Layer: -1, Present: "present", BatchAxis: 1, LengthAxis: 3}}},
		{"whisper self and cross",
			[]Input{in("past_key_self_0", f32, "batch_size", 6, "past_decode_sequence_length", 64), in("past_value_cross_1", f32, "batch_size", 6, "encode_sequence_length", 64)},
			[]Input{in("present_key_self_0", f32, "batch_size", 6, "total", 64)},
			[]Slot{{Role: Cache, Layer: 0, Present: "present_key_self_0", BatchAxis: 0, LengthAxis: 2}, {Role: CrossCache, Layer: 1, BatchAxis: 0, LengthAxis: 2}}},
		{"optimum seq2seq",
			[]Input{in("past_key_values.2.decoder.value", f32, "batch_size", 4, "past_decoder_sequence_length", 8), in("past_key_values.2.encoder.key", f32, "batch_size", 4, "encoder_sequence_length_out", 8)},
			[]Input{in("present.2.decoder.value", f32, "batch_size", 4, "past_decoder_sequence_length + 1", 8)},
			[]Slot{{Role: Cache, Layer: 2, Present: "present.2.decoder.value", BatchAxis: 0, LengthAxis: 2}, {Role: CrossCache, Layer: 2, BatchAxis: 0, LengthAxis: 2}}},
		{"hybrid conv/attention decoder with gaps",
			[]Input{in("past_conv.0", f32, "batch_size", 32, 4), in("past_key_values.1.key", f32, "batch_size", 2, "past_sequence_length", 8), in("past_conv.2", f32, "?", 32, 4)},
			[]Input{in("present_conv.0", f32, "batch_size", 32, 4), in("present.1.key", f32, "batch_size", 2, "total_sequence_length", 8), in("present_conv.2", f32, "?", 32, 4)},
			[]Slot{{Role: State, Layer: 0, Present: "present_conv.0", BatchAxis: 0, LengthAxis: -1}, {Role: Cache, Layer: 1, Present: "present.1.key", BatchAxis: 0, LengthAxis: 2},
				{Role: State, Layer: 2, Present: "present_conv.2", BatchAxis: 0, LengthAxis: -1}}},
		{"others",
			[]Input{in("pixel_values", f32, "batch", 3, 8, 8), in("past_steps", i64, "batch"), in("lora_A", f32, "?", "?")}, nil,
			[]Slot{{Role: Unknown, Layer: -1, BatchAxis: -1, LengthAxis: -1}, {Role: Unknown, Layer: -1, BatchAxis: -1, LengthAxis: -1}, {Role: Unknown, Layer: -1, BatchAxis: -1, LengthAxis: -1}}},
	}
	for _, tc := range tests {
		p := Classify(tc.inputs, tc.outputs)
		got := p.Slots()
		if len(got) != len(tc.want) {
			t.Fatalf("%s: got %d slots, want %d", tc.reason, len(got), len(tc.want))
		}
		for i, s := range got {
			w := tc.want[i]
			if s.Name != tc.inputs[i].Name || s.Role != w.Role || s.Layer != w.Layer || s.Present != w.Present || s.BatchAxis != w.BatchAxis || s.LengthAxis != w.LengthAxis {
				t.Errorf("%s: input %s: got role %v layer %d present %q axes %d,%d; want %v %d %q %d,%d", tc.reason, s.Input,
					s.Role, s.Layer, s.Present, s.BatchAxis, s.LengthAxis, w.Role, w.Layer, w.Present, w.BatchAxis, w.LengthAxis)
			}
		}
	}
}

func TestFeedShape(t *testing.T) {
	f32 := dtype.Float32
	plan := Classify(
		[]Input{in("input_mask", dtype.Int32, "batch", "total"), in("segment_ids", dtype.Int32, "batch", 16), in("past_key_values.0.key", f32, "batch", "?", "past", 4),
			in("past_conv.0", f32, "batch_size", 32, 4), in("past_3", f32, 2, "?", 2, "?", 2), in("past_conv.1", f32, "batch_size", "?", 4), in("past_key_cross_0", f32, "batch", 2, "enc", 4)},
		[]Input{in("present.0.key", f32, "batch", 2, "total", 4)})
	tests := []struct {
		input          string
		batch, seq, pa int
		want           []int64
		err            string
	}{
		{"input_mask", 3, 5, 2, []int64{3, 7}, ""},
		{"segment_ids", 3, 5, 0, []int64{3, 16}, ""}, // the fixed size stands; Check says so
		{"past_key_values.0.key", 3, 5, 0, []int64{3, 2, 0, 4}, ""},
		{"past_key_values.0.key", 1, 1, 9, []int64{1, 2, 9, 4}, ""},
		{"past_conv.0", 2, 7, 0, []int64{2, 32, 4}, ""},
		{"past_3", 2, 1, 0, []int64{2, 2, 2, 0, 2}, ""},
		{"past_conv.1", 2, 1, 0, nil, "cannot tell the size of dimension 1"},
		{"past_key_cross_0", 2, 1, 5, []int64{2, 2, 5, 4}, ""},
	}
	for i, tc := range tests {
		s, _ := plan.Lookup(tc.input)
		got, err := s.FeedShape(tc.batch, tc.seq, tc.pa)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("test %d (%s): got error %v, want one containing %q", i, tc.input, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("unexpected result for test %d (%s): got %v, %v want %v", i, tc.input, got, err, tc.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	plan := Classify([]Input{in("input_ids", dtype.Int32, "b", "s"), in("input_mask", dtype.Int32, "b", "s"), in("segment_ids", dtype.Int32, "b", "s"),
		in("position_ids", dtype.Int64, "b", "s"), in("past_conv.0", dtype.Float32, "b", 2, 3), in("x", dtype.Float32, "b")},
		[]Input{in("present_conv.0", dtype.Float32, "b", 2, 3)})
	want := []struct {
		has  bool
		text string
	}{{false, ""}, {true, "ones"}, {true, "zeros"}, {true, "counted from the past length"}, {true, "zeros"}, {false, ""}}
	for i, s := range plan.Slots() {
		if s.HasDefault() != want[i].has || !strings.Contains(s.Default(), want[i].text) || (want[i].text == "") != (s.Default() == "") {
			t.Errorf("input %s: got default %v %q, want %v %q", s.Name, s.HasDefault(), s.Default(), want[i].has, want[i].text)
		}
	}
	if got, want := PositionIDs(2, 3, 4), []int64{4, 5, 6, 4, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("PositionIDs: got %v want %v", got, want)
	}
}

func TestForField(t *testing.T) {
	plan := Classify([]Input{in("input_ids:0", dtype.Int32, "b", "s"), in("input_mask:0", dtype.Int32, "b", "s"), in("segment_ids:0", dtype.Int32, "b", "s")}, nil)
	tests := []struct{ field, want string }{
		{"input_mask:0", "input_mask:0"}, {"input_mask", "input_mask:0"}, {"INPUT_MASK", "input_mask:0"},
		{"attention_mask", "input_mask:0"}, {"token_type_ids", "segment_ids:0"}, {"position_ids", ""}, {"label", ""},
	}
	for _, tc := range tests {
		s, ok := plan.ForField(tc.field)
		if got := map[bool]string{true: s.Name}[ok]; got != tc.want {
			t.Errorf("ForField(%q): got %q want %q", tc.field, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	ids := in("input_ids", dtype.Int32, "batch", "seq")
	mask := in("input_mask", dtype.Int32, "batch", 8)
	tests := []struct {
		input Input
		dt    dtype.Type
		shape []int64
		err   string
	}{
		{ids, dtype.Int32, []int64{2, 8}, ""},
		{mask, dtype.Int32, []int64{2, 8}, ""},
		{mask, dtype.Int64, []int64{2, 8}, "input input_mask int32[batch 8]: given int64 [2 8]: element type int64, want int32"},
		{mask, dtype.Int32, []int64{2, 8, 1}, "rank 3, want 2"},
		{mask, dtype.Int32, []int64{2, 9}, "dimension 1 is 9, want 8"},
		{mask, dtype.Int32, []int64{3, 8}, "dimension 0 (batch) is 3, but input input_ids has batch = 2"},
		{Input{Name: "m"}, dtype.Int64, []int64{1}, "not a tensor"},
	}
	var c Checker
	for i, tc := range tests {
		err := c.Check(tc.input, tc.dt, tc.shape)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("test %d: got error %v, want %q", i, err, tc.err)
		}
	}
}
