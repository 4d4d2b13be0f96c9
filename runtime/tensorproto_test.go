package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TestTensorFromProtoExternal reads defaults from external data through
// package graph, with its checks: the location must stay inside the
// model's folder, and the file must hold the bytes.
func TestTensorFromProtoExternal(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "model")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	raw := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40} // 1, 2
	for _, p := range []string{filepath.Join(sub, "w.bin"), filepath.Join(dir, "outside.bin")} {
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	external := func(location string, dims ...int64) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{Name: "w", Dims: dims, DataType: int32(dtype.Float32),
			DataLocation: onnxpb.TensorProto_EXTERNAL,
			ExternalData: []*onnxpb.StringStringEntryProto{{Key: "location", Value: location}}}
	}
	got, err := tensorFromProto(external("w.bin", 2), sub)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Float32(), []float32{1, 2}) {
		t.Errorf("got %v, want [1 2]", got.Float32())
	}
	for _, tc := range []struct {
		tp   *onnxpb.TensorProto
		want string
	}{
		{external("../outside.bin", 2), "must be inside the model's folder"},
		{external(filepath.Join(dir, "outside.bin"), 2), "must be inside the model's folder"},
		{external("w.bin", 3), "holds 8 bytes, need 12"},
		{external("missing.bin", 2), "missing"},
	} {
		if _, err := tensorFromProto(tc.tp, sub); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("location %s: got error %v, want one saying %q", tc.tp.ExternalData[0].Value, err, tc.want)
		}
	}
}
