package graph_test

import (
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// dimStrings returns the dims as Dim.String writes them.
func dimStrings(dims []graph.Dim) []string {
	var s []string
	for _, d := range dims {
		s = append(s, d.String())
	}
	return s
}

func TestTensorInfo(t *testing.T) {
	tests := []struct {
		reason    string
		info      *onnxpb.ValueInfoProto
		wantDims  []string
		wantShape []int64
	}{
		{"fixed dims", graph.TensorInfo("v", dtype.Float16, []int64{2, 3}), []string{"2", "3"}, []int64{2, 3}},
		{"a negative dim is unknown", graph.TensorInfo("v", dtype.Float16, []int64{-1, 0}), []string{"?", "0"}, []int64{-1, 0}},
		{"nil dims declare a scalar", graph.TensorInfo("v", dtype.Float16, nil), nil, nil},
		{"named, fixed and unknown dims", graph.SymbolicTensorInfo("v", dtype.Float16,
			[]graph.Dim{graph.DimParam("batch"), graph.DimValue(4), {}, graph.DimParam(""), graph.DimValue(-3)}),
			[]string{"batch", "4", "?", "?", "?"}, []int64{-1, 4, -1, -1, -1}},
	}
	for _, tc := range tests {
		dt, dims, ok := graph.ValueDims(tc.info)
		if dt != dtype.Float16 || !ok || !slices.Equal(dimStrings(dims), tc.wantDims) {
			t.Errorf("%s: ValueDims gives %s %v (ok %v), want float16 %v", tc.reason, dt, dimStrings(dims), ok, tc.wantDims)
		}
		_, shape, ok := graph.ValueShape(tc.info)
		if !ok || !slices.Equal(shape, tc.wantShape) {
			t.Errorf("%s: ValueShape gives %v (ok %v), want %v", tc.reason, shape, ok, tc.wantShape)
		}
		if tc.info.Name != "v" || tc.info.GetType().GetTensorType().GetShape() == nil {
			t.Errorf("%s: the declaration lost its name or its shape", tc.reason)
		}
	}
}

func TestDim(t *testing.T) {
	tests := []struct {
		d     graph.Dim
		size  int64
		fixed bool
		param string
	}{
		{graph.DimValue(7), 7, true, ""},
		{graph.DimValue(0), 0, true, ""},
		{graph.DimValue(-1), 0, false, ""},
		{graph.DimParam("seq"), 0, false, "seq"},
		{graph.Dim{}, 0, false, ""},
	}
	for i, tc := range tests {
		size, fixed := tc.d.Value()
		if size != tc.size || fixed != tc.fixed || tc.d.Param() != tc.param {
			t.Errorf("test %d: got (%d, %v, %q), want (%d, %v, %q)", i, size, fixed, tc.d.Param(), tc.size, tc.fixed, tc.param)
		}
	}
	if got := dimStrings(graph.DimValues([]int64{1, -1, 5})); !slices.Equal(got, []string{"1", "?", "5"}) {
		t.Errorf("DimValues gives %v", got)
	}
}

func TestValueDimsOfOtherValues(t *testing.T) {
	unshaped := graph.TensorInfo("v", dtype.Int64, nil)
	unshaped.Type.GetTensorType().Shape = nil
	tests := []struct {
		reason string
		info   *onnxpb.ValueInfoProto
		dt     dtype.Type
	}{
		{"not a tensor", &onnxpb.ValueInfoProto{Name: "seq", Type: &onnxpb.TypeProto{}}, dtype.Undefined},
		{"a tensor without a shape", unshaped, dtype.Int64},
	}
	for _, tc := range tests {
		dt, dims, ok := graph.ValueDims(tc.info)
		if ok || dims != nil || dt != tc.dt {
			t.Errorf("%s: got %s %v ok=%v, want %s, no dims, not ok", tc.reason, dt, dims, ok, tc.dt)
		}
	}
}
