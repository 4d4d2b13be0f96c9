package graph_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// weightsModel returns a model with one float32 initializer of n values,
// all v.
func weightsModel(n int, v float32) *graph.Model {
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = v
	}
	return graph.New(&onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}},
		Graph: &onnxpb.GraphProto{Name: "g", Initializer: []*onnxpb.TensorProto{graph.NewFloat32Tensor("w", dtype.Float32, []int64{int64(n)}, vals)}}}, "")
}

// TestDataFileOfAnotherSave: a model beside the data file of another save
// (what a kill between the two renames of a save leaves, or two saves
// racing) is refused, where it used to run with the other save's
// weights. Issue 16 D2.
func TestDataFileOfAnotherSave(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	opts := graph.SaveOptions{ExternalData: true, DataFile: "w.data"}
	if err := weightsModel(1024, 1).Save(a, opts); err != nil {
		t.Fatal(err)
	}
	aData, err := os.ReadFile(filepath.Join(dir, "w.data"))
	if err != nil {
		t.Fatal(err)
	}
	// Same layout, other values: b's save replaces w.data, a.onnx stays.
	if err := weightsModel(1024, 2).Save(b, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := graph.Load(a); err == nil || !strings.Contains(err.Error(), "belongs to another save") {
		t.Fatalf("a.onnx beside b's data: got %v, want a refusal", err)
	}
	m, err := graph.Load(b)
	if err != nil {
		t.Fatalf("b.onnx beside its own data: %v", err)
	}
	// The identity describes the files, not the model: it is not in the
	// model in memory.
	for _, p := range m.Proto.MetadataProps {
		if p.Key == graph.DataIDKey {
			t.Errorf("the loaded model keeps %s", graph.DataIDKey)
		}
	}
	m.Close()

	// A data file another tool wrote (no trailer) is not checked.
	if err := os.WriteFile(filepath.Join(dir, "w.data"), aData[:len(aData)-57], 0o644); err != nil { // less the 57-byte trailer
		t.Fatal(err)
	}
	if m, err := graph.Load(a); err != nil {
		t.Errorf("a data file without our trailer: %v", err)
	} else {
		m.Close()
	}
}

// TestSaveWritesSharedRegionsOnce: initializers that share one region of
// bytes are written to the data file once (issue 16 M6: a 1 MB region
// referenced by 200 initializers made inject write 216 MB).
func TestSaveWritesSharedRegionsOnce(t *testing.T) {
	shared := graph.NewFloat32Tensor("w0", dtype.Float32, []int64{64 << 10}, make([]float32, 64<<10))
	g := &onnxpb.GraphProto{Name: "g"}
	for i := range 200 {
		g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: "w" + string(rune('a'+i%26)) + strings.Repeat("x", i/26),
			DataType: shared.DataType, Dims: shared.Dims, RawData: shared.RawData})
	}
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}, Graph: g}, "")
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path + ".data")
	if err != nil {
		t.Fatal(err)
	}
	if region := int64(len(shared.RawData)); st.Size() > 2*region {
		t.Errorf("data file holds %d bytes for 200 tensors sharing one %d-byte region", st.Size(), region)
	}
	back, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	for _, w := range back.Graph().Initializer {
		b, err := back.TensorBytes(w)
		if err != nil || len(b) != len(shared.RawData) {
			t.Fatalf("%s: %d bytes, %v", w.Name, len(b), err)
		}
	}
}
