package graph_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func copyFile(t *testing.T, from, to string, limit int) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if limit > 0 && limit < len(b) {
		b = b[:limit]
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadErrors checks that bad input gets an error naming the file and
// the problem.
func TestLoadErrors(t *testing.T) {
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	tests := []struct {
		name  string
		setup func(dir string) string // returns the path to load
		want  []string                // substrings of the error
	}{
		{"missing file", func(dir string) string { return filepath.Join(dir, "nope.onnx") },
			[]string{"nope.onnx", "no such file"}},
		{"empty file", func(dir string) string {
			p := filepath.Join(dir, "empty.onnx")
			os.WriteFile(p, nil, 0o644)
			return p
		}, []string{"empty.onnx", "empty model"}},
		{"garbage", func(dir string) string {
			p := filepath.Join(dir, "garbage.onnx")
			os.WriteFile(p, []byte("this is not a protobuf at all \xff\xff\xff\xff"), 0o644)
			return p
		}, []string{"garbage.onnx", "not an ONNX model"}},
		{"truncated", func(dir string) string {
			p := filepath.Join(dir, "truncated.onnx")
			copyFile(t, sharedModel(t, "distilbert-optimum"), p, 1000)
			return p
		}, []string{"truncated.onnx", "not an ONNX model"}},
		{"missing external data", func(dir string) string {
			p := filepath.Join(dir, "model.onnx")
			copyFile(t, llama, p, 0)
			return p
		}, []string{"model.onnx.data", "missing"}},
		{"short external data", func(dir string) string {
			p := filepath.Join(dir, "model.onnx")
			copyFile(t, llama, p, 0)
			copyFile(t, llama+".data", p+".data", 1000)
			return p
		}, []string{"model.onnx", "external data", "holds 1000 bytes"}},
		{"weight dims claim more than its data", func(dir string) string {
			return saveOne(t, dir, "big.onnx", &onnxpb.TensorProto{Name: "w", DataType: int32(dtype.Float32), Dims: []int64{1e11, 8}, RawData: make([]byte, 48)})
		}, []string{"big.onnx", `"w"`, "needs 3200000000000 bytes", "holds 48"}},
		{"weight data longer than its dims", func(dir string) string {
			return saveOne(t, dir, "long.onnx", &onnxpb.TensorProto{Name: "w", DataType: int32(dtype.Float32), Dims: []int64{2}, RawData: make([]byte, 12)})
		}, []string{"long.onnx", `"w"`, "needs 8 bytes", "holds 12"}},
		{"typed data shorter than its dims", func(dir string) string {
			return saveOne(t, dir, "typed.onnx", &onnxpb.TensorProto{Name: "w", DataType: int32(dtype.Float32), Dims: []int64{3}, FloatData: []float32{1}})
		}, []string{"typed.onnx", `"w"`, "needs 12 bytes", "holds 4"}},
		{"dims that overflow", func(dir string) string {
			return saveOne(t, dir, "overflow.onnx", &onnxpb.TensorProto{Name: "w", DataType: int32(dtype.Float32), Dims: []int64{1 << 40, 1 << 40}, RawData: make([]byte, 4)})
		}, []string{"overflow.onnx", `"w"`, "too large"}},
		{"two initializers of one name", func(dir string) string {
			w := graph.NewFloat32Tensor("w", dtype.Float32, []int64{1}, []float32{1})
			return saveOne(t, dir, "twice.onnx", w, graph.NewFloat32Tensor("w", dtype.Float32, []int64{1}, []float32{2}))
		}, []string{"twice.onnx", `two initializers are named "w"`}},
		{"external offset near 2^63", func(dir string) string {
			os.WriteFile(filepath.Join(dir, "w.data"), make([]byte, 64), 0o644)
			return saveOne(t, dir, "offset.onnx", externalTensor("w", []int64{4}, "w.data", "9223372036854775800", "16"))
		}, []string{"offset.onnx", `"w"`, "holds 64 bytes"}},
		{"external length near 2^63", func(dir string) string {
			os.WriteFile(filepath.Join(dir, "w.data"), make([]byte, 64), 0o644)
			return saveOne(t, dir, "length.onnx", externalTensor("w", []int64{4}, "w.data", "8", "9223372036854775800"))
		}, []string{"length.onnx", `"w"`}},
		{"external length other than the dims", func(dir string) string {
			os.WriteFile(filepath.Join(dir, "w.data"), make([]byte, 64), 0o644)
			return saveOne(t, dir, "mismatch.onnx", externalTensor("w", []int64{1e6, 1e6}, "w.data", "0", "48"))
		}, []string{"mismatch.onnx", `"w"`, "needs 4000000000000 bytes", "says 48"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup(t.TempDir())
			m, err := graph.Load(p)
			if err == nil {
				m.Close()
				t.Fatalf("Load(%s): got no error", p)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "graph: ") || strings.Contains(msg, "\n") {
				t.Errorf("error is not one line prefixed with the package: %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

// TestLoadRejectsEscapingLocation refuses external data outside the
// model's folder.
func TestLoadRejectsEscapingLocation(t *testing.T) {
	m := graph.New(nil2(), "")
	w := graph.NewFloat32Tensor("w", dtype.Float32, []int64{4}, []float32{1, 2, 3, 4})
	m.AddInitializer(w)
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1, DataFile: "w.bin"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	b2 := []byte(strings.Replace(string(b), "w.bin", "../xx", 1))
	os.WriteFile(p, b2, 0o644)
	if _, err := graph.Load(p); err == nil || !strings.Contains(err.Error(), "inside the model's folder") {
		t.Fatalf("got %v, want an error about the location", err)
	}
}

// saveOne writes a model whose graph holds just the given initializers,
// serialized as they are (no Save checks), and returns its path.
func saveOne(t *testing.T, dir, name string, inits ...*onnxpb.TensorProto) string {
	t.Helper()
	p := &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}},
		Graph: &onnxpb.GraphProto{Name: "g", Initializer: inits}}
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// externalTensor is a float32 tensor whose data the model says is in
// location at offset, length bytes long.
func externalTensor(name string, dims []int64, location, offset, length string) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: name, DataType: int32(dtype.Float32), Dims: dims, DataLocation: onnxpb.TensorProto_EXTERNAL,
		ExternalData: []*onnxpb.StringStringEntryProto{{Key: "location", Value: location}, {Key: "offset", Value: offset}, {Key: "length", Value: length}}}
}

// TestLoadRefusesLinksOut: external data reached through a symbolic link
// that leads out of the model's folder is refused (issue 16 X1: with
// link.data -> /etc/passwd, inject copied the password file into its
// output), and so is a location that is a folder; a link that stays
// inside the folder is followed.
func TestLoadRefusesLinksOut(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(secret, filepath.Join(dir, "link.data")); err != nil {
		t.Fatal(err)
	}
	path := saveOne(t, dir, "m.onnx", externalTensor("w", []int64{4}, "link.data", "0", "16"))
	if m, err := graph.Load(path); err == nil {
		m.Close()
		t.Fatal("Load followed a link out of the model's folder")
	} else if msg := err.Error(); !strings.Contains(msg, "m.onnx") || !strings.Contains(msg, "leads out of the model's folder") || !strings.Contains(msg, secret) {
		t.Errorf("error %q does not name the model, the escape and the target", msg)
	}

	// A model built in memory that points there is refused on access.
	m := graph.New(&onnxpb.ModelProto{Graph: &onnxpb.GraphProto{Initializer: []*onnxpb.TensorProto{externalTensor("w", []int64{4}, "link.data", "0", "16")}}}, dir)
	if _, err := m.Float32s(m.Initializer("w")); err == nil || !strings.Contains(err.Error(), "leads out") {
		t.Errorf("reading through the link: got %v, want a refusal", err)
	}

	// A link inside the folder is fine.
	if err := os.WriteFile(filepath.Join(dir, "real.bin"), make([]byte, 16), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.bin", filepath.Join(dir, "inside.data")); err != nil {
		t.Fatal(err)
	}
	ok, err := graph.Load(saveOne(t, dir, "ok.onnx", externalTensor("w", []int64{4}, "inside.data", "0", "16")))
	if err != nil {
		t.Fatalf("a link inside the folder: %v", err)
	}
	ok.Close()

	// A location that is a folder.
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := graph.Load(saveOne(t, dir, "folder.onnx", externalTensor("w", []int64{4}, "sub", "0", "16"))); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a folder as external data: got %v, want 'not a regular file'", err)
	}
}
