package graph_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// FuzzLoadExternal loads models whose initializers keep their data in an
// external file that the fuzzer writes (issue 16: FuzzParse never creates
// one, so it could not reach C1's offset overflow). The location, offset,
// length, dims and element type are fuzzed, two initializers may share
// the region, and the data file may be a file, a folder, a link out of
// the model's folder, a link inside it, or missing. Load must return an
// error or a model, never panic; a model it returns must survive reading
// every tensor, Validate and a Save with external data.
func FuzzLoadExternal(f *testing.F) {
	zeros := make([]byte, 64)
	f.Add("w.data", "0", "16", int64(4), int64(1), int32(1), zeros, uint8(0), false)
	f.Add("w.data", "9223372036854775800", "64", int64(4), int64(4), int32(1), zeros, uint8(0), false)
	f.Add("w.data", "16", "9223372036854775807", int64(2), int64(2), int32(1), zeros, uint8(0), true)
	f.Add("w.data", "0", "", int64(1e11), int64(8), int32(10), zeros, uint8(0), false)
	f.Add("../w.data", "0", "16", int64(4), int64(1), int32(1), zeros, uint8(0), false)
	f.Add("w.data", "0", "16", int64(4), int64(1), int32(1), zeros, uint8(1), false)
	f.Add("w.data", "0", "16", int64(4), int64(1), int32(1), zeros, uint8(2), true)
	f.Add("w.data", "8", "-8", int64(-1), int64(3), int32(7), zeros[:3], uint8(3), false)
	f.Fuzz(func(t *testing.T, location, offset, length string, d0, d1 int64, dt int32, data []byte, kind uint8, shared bool) {
		// Protobuf strings are UTF-8: a model file cannot hold others.
		location, offset, length = strings.ToValidUTF8(location, "?"), strings.ToValidUTF8(offset, "?"), strings.ToValidUTF8(length, "?")
		if len(data) > 1<<16 {
			data = data[:1<<16]
		}
		dir := t.TempDir()
		file := filepath.Join(dir, "w.data")
		switch kind % 5 {
		case 0:
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := os.Mkdir(file, 0o755); err != nil {
				t.Fatal(err)
			}
		case 2, 3:
			target := filepath.Join(t.TempDir(), "outside")
			if kind%5 == 3 {
				target = filepath.Join(dir, "inside.bin")
			}
			if err := os.WriteFile(target, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, file); err != nil {
				t.Fatal(err)
			}
		}
		tensor := func(name string) *onnxpb.TensorProto {
			w := externalTensor(name, []int64{d0, d1}, location, offset, length)
			w.DataType = dt
			return w
		}
		inits := []*onnxpb.TensorProto{tensor("a")}
		if shared {
			inits = append(inits, tensor("b"))
		}
		m, err := graph.Load(saveOne(t, dir, "m.onnx", inits...))
		if err != nil {
			return
		}
		defer m.Close()
		for _, init := range m.Graph().Initializer {
			_, _ = m.TensorBytes(init)
			_, _ = m.Float32s(init)
		}
		_ = m.Validate()
		_ = m.Save(filepath.Join(dir, "out.onnx"), graph.SaveOptions{ExternalData: true})
	})
}
