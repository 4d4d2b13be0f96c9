package graph_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TestFormatError checks that a malformed model is a *graph.FormatError
// naming the file and the tensor at fault, and that its message is the
// one-line "graph: FILE: ..." that Load has always written.
func TestFormatError(t *testing.T) {
	tests := []struct {
		reason     string
		setup      func(dir string) string // writes the model, returns its path
		wantTensor string
		wantMsg    string // a part of the message after "graph: PATH: "
	}{
		{"empty file", func(dir string) string {
			p := filepath.Join(dir, "empty.onnx")
			os.WriteFile(p, nil, 0o644)
			return p
		}, "", "empty model"},
		{"not a protobuf", func(dir string) string {
			p := filepath.Join(dir, "garbage.onnx")
			os.WriteFile(p, []byte("\xff\xff\xff\xff not a protobuf"), 0o644)
			return p
		}, "", "not an ONNX model: "},
		{"data shorter than the dims", func(dir string) string {
			return saveOne(t, dir, "short.onnx", &onnxpb.TensorProto{Name: "w", DataType: int32(dtype.Float32), Dims: []int64{3}, RawData: make([]byte, 4)})
		}, "w", `tensor "w": float32 [3] needs 12 bytes of data, the model holds 4`},
		{"a negative dimension", func(dir string) string {
			return saveOne(t, dir, "neg.onnx", &onnxpb.TensorProto{Name: "w", DataType: int32(dtype.Float32), Dims: []int64{-1}})
		}, "w", `tensor "w": negative dimension in [-1]`},
		{"external data outside the folder", func(dir string) string {
			return saveOne(t, dir, "escape.onnx", externalTensor("w", []int64{4}, "../w.data", "0", "16"))
		}, "w", `tensor "w": external data location "../w.data" must be inside the model's folder`},
		{"a bad external offset", func(dir string) string {
			return saveOne(t, dir, "offset.onnx", externalTensor("w", []int64{4}, "w.data", "-3", "16"))
		}, "w", `tensor "w": bad external data offset "-3"`},
		{"external data reached through a link out of the folder", func(dir string) string {
			outside := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+"-outside.data")
			os.WriteFile(outside, make([]byte, 16), 0o644)
			os.Symlink(outside, filepath.Join(dir, "w.data"))
			return saveOne(t, dir, "link.onnx", externalTensor("w", []int64{4}, "w.data", "0", "16"))
		}, "w", `tensor "w": external data location "w.data" leads out of the model's folder, through a symbolic link`},
		{"external data of another save", func(dir string) string {
			save := func(dir string, v float32) string {
				m := graph.New(nil2(), "")
				m.AddInitializer(graph.NewFloat32Tensor("w", dtype.Float32, []int64{4}, []float32{v, v, v, v}))
				p := filepath.Join(dir, "m.onnx")
				if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
					t.Fatal(err)
				}
				return p
			}
			p, other := save(dir, 1), save(t.TempDir(), 2)
			copyFile(t, other+".data", p+".data", 0)
			return p
		}, "", "m.onnx.data belongs to another save of the model"},
		{"two initializers of one name", func(dir string) string {
			w := graph.NewFloat32Tensor("w", dtype.Float32, []int64{1}, []float32{1})
			return saveOne(t, dir, "twice.onnx", w, graph.NewFloat32Tensor("w", dtype.Float32, []int64{1}, []float32{2}))
		}, "", `two initializers are named "w"`},
	}
	for i, test := range tests {
		p := test.setup(t.TempDir())
		_, err := graph.Load(p)
		var fe *graph.FormatError
		if !errors.As(err, &fe) {
			t.Errorf("test %d (%s): got %v, want a *graph.FormatError", i, test.reason, err)
			continue
		}
		if fe.File != p || fe.Tensor != test.wantTensor {
			t.Errorf("test %d (%s): got File %q, Tensor %q want %q, %q", i, test.reason, fe.File, fe.Tensor, p, test.wantTensor)
		}
		if msg, prefix := err.Error(), "graph: "+p+": "; !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, test.wantMsg) {
			t.Errorf("test %d (%s): got %q want %q followed by a message holding %q", i, test.reason, msg, prefix, test.wantMsg)
		}
	}
}

// TestFormatErrorOfBytes checks that Parse, which has no file, gives a
// *graph.FormatError that names none, and that the protobuf error behind
// "not an ONNX model" stays in the chain.
func TestFormatErrorOfBytes(t *testing.T) {
	_, err := graph.Parse([]byte("\xff\xff\xff\xff"), "")
	var fe *graph.FormatError
	if !errors.As(err, &fe) || fe.File != "" {
		t.Fatalf("got %v, want a *graph.FormatError without a file", err)
	}
	if errors.Unwrap(fe) == nil {
		t.Errorf("got %v, want the protobuf error wrapped", err)
	}
	if want := "graph: not an ONNX model: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %q want it to start with %q", err, want)
	}
}
