package runtime

import (
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"google.golang.org/protobuf/proto"
)

func TestDisableOptimizer(t *testing.T) {
	const key = disableOptimizersKey
	tests := []struct {
		entries [][2]string
		want    string
	}{
		{nil, "X"},
		{[][2]string{{"other", "1"}}, "X"},
		{[][2]string{{key, ""}}, "X"},
		{[][2]string{{key, "A"}}, "A;X"},
		{[][2]string{{key, "A;B"}}, "A;B;X"},
		{[][2]string{{key, "A"}, {key, "B"}}, "B;X"},
		{[][2]string{{key, "A;X"}}, "A;X"},
		{[][2]string{{key, "XY"}}, "XY;X"},
	}
	for i, tc := range tests {
		got := disableOptimizer(tc.entries, "X")
		if got != [2]string{key, tc.want} {
			t.Errorf("unexpected result for test %d: got %q want %q", i, got, tc.want)
		}
	}
}

// TestHideInitializers checks that hiding the initializers at the tags that
// the scan found removes exactly them from the model, and keeps the rest.
func TestHideInitializers(t *testing.T) {
	f16 := func(name string, dims ...int64) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(dtype.Float16), RawData: make([]byte, 2*dims[0]*dims[1])}
	}
	vi := func(name string, dt dtype.Type) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dt)}}}}
	}
	m := &onnxpb.ModelProto{
		IrVersion:   8,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}},
		Graph: &onnxpb.GraphProto{
			Name:        "g",
			Input:       []*onnxpb.ValueInfoProto{vi("x", dtype.Float16), vi("A", dtype.Float16), vi("s", dtype.Float32)},
			Initializer: []*onnxpb.TensorProto{f16("W", 4, 4), f16("A", 4, 0), {Name: "s", DataType: int32(dtype.Float32), FloatData: []float32{2}}},
			Node:        []*onnxpb.NodeProto{{OpType: "MatMul", Input: []string{"x", "W"}, Output: []string{"y"}}},
			Output:      []*onnxpb.ValueInfoProto{vi("y", dtype.Float16)},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	info, err := readModelInfo(memSource(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.defaultTags["A"]) != 1 || len(info.defaultTags["s"]) != 1 || info.defaultTags["W"] != nil {
		t.Fatalf("default tags %v, want one for A and one for s", info.defaultTags)
	}
	s, err := prepare("test", memSource(b), "", &config{optLevel: OptimizeAll})
	if err != nil {
		t.Fatal(err)
	}
	if !s.guard.hidden["A"] || len(s.guard.hidden) != 1 || len(s.guard.tags) != 1 || s.guard.entries != nil {
		t.Fatalf("guard %+v, want A hidden", s.guard)
	}
	orig := slices.Clone(b)
	if err := hideInitializers(b, s.guard.tags); err != nil {
		t.Fatal(err)
	}
	var got onnxpb.ModelProto
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, init := range got.GetGraph().GetInitializer() {
		names = append(names, init.GetName())
	}
	if len(names) != 2 || names[0] != "W" || names[1] != "s" {
		t.Errorf("initializers after hiding A: %v, want [W s]", names)
	}
	if len(got.GetGraph().GetInput()) != 3 || len(got.GetGraph().GetNode()) != 1 {
		t.Errorf("hiding A changed more than its initializer: %v", got.GetGraph())
	}
	if err := hideInitializers(b, s.guard.tags); err == nil {
		t.Error("hiding A twice: got no error")
	}
	for _, level := range []OptimizationLevel{OptimizeNone, OptimizeBasic, OptimizeExtended} {
		s, err := prepare("test", memSource(orig), "", &config{optLevel: level})
		if err != nil {
			t.Fatal(err)
		}
		if s.guard.hidden != nil || s.guard.entries != nil {
			t.Errorf("level %s: guard %+v, want none", level, s.guard)
		}
	}
}
