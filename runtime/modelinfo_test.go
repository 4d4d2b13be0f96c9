package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"google.golang.org/protobuf/proto"
)

// TestReadModelInfo checks the scan of the real models against a full
// unmarshal, through both sources.
func TestReadModelInfo(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "shared", "models", "*", "*.onnx"))
	if len(paths) == 0 {
		t.Skip("shared models not available")
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m onnxpb.ModelProto
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		inits := map[string]bool{}
		for _, init := range m.GetGraph().GetInitializer() {
			inits[init.GetName()] = true
		}
		var wantIn, wantOut []string
		for _, v := range m.GetGraph().GetInput() {
			if !inits[v.GetName()] || m.GetIrVersion() >= 4 {
				wantIn = append(wantIn, v.GetName())
			}
		}
		for _, v := range m.GetGraph().GetOutput() {
			wantOut = append(wantOut, v.GetName())
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := newFileSource(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, src := range []source{memSource(b), fs} {
			info, err := readModelInfo(src)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if info.irVersion != m.GetIrVersion() {
				t.Errorf("%s: IR version %d, want %d", path, info.irVersion, m.GetIrVersion())
			}
			var gotIn, gotOut []string
			for _, v := range info.inputs {
				gotIn = append(gotIn, v.Name)
				if v.Optional != inits[v.Name] {
					t.Errorf("%s: input %s optional=%v", path, v.Name, v.Optional)
				}
			}
			for _, v := range info.outputs {
				gotOut = append(gotOut, v.Name)
			}
			if !slices.Equal(gotIn, wantIn) || !slices.Equal(gotOut, wantOut) {
				t.Errorf("%s: inputs %v outputs %v, want %v and %v", path, gotIn, gotOut, wantIn, wantOut)
			}
			for name, sp := range info.defaultSpans {
				tp := &onnxpb.TensorProto{}
				b, _ := src.at(sp.off, int(sp.n))
				if err := proto.Unmarshal(b, tp); err != nil || tp.GetName() != name {
					t.Errorf("%s: default span of %s holds %q, %v", path, name, tp.GetName(), err)
				}
			}
		}
		f.Close()
	}
}

func TestTensorFromProto(t *testing.T) {
	tests := []struct {
		tp   *onnxpb.TensorProto
		want []float64
		err  bool
	}{
		{&onnxpb.TensorProto{Dims: []int64{2}, DataType: 1, FloatData: []float32{1, 2}}, []float64{1, 2}, false},
		{&onnxpb.TensorProto{Dims: []int64{2}, DataType: 1, RawData: []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40}}, []float64{1, 2}, false},
		{&onnxpb.TensorProto{Dims: []int64{2}, DataType: 7, Int64Data: []int64{-1, 5}}, []float64{-1, 5}, false},
		{&onnxpb.TensorProto{Dims: []int64{1}, DataType: 10, Int32Data: []int32{0x3c00}}, []float64{1}, false},
		{&onnxpb.TensorProto{Dims: []int64{2}, DataType: 9, Int32Data: []int32{1, 0}}, []float64{1, 0}, false},
		{&onnxpb.TensorProto{Dims: []int64{4, 0}, DataType: 1}, []float64{}, false},
		{&onnxpb.TensorProto{Dims: []int64{2}, DataType: 11, DoubleData: []float64{0.5, 1}}, []float64{0.5, 1}, false},
		{&onnxpb.TensorProto{Dims: []int64{3}, DataType: 1, FloatData: []float32{1, 2}}, nil, true},
		{&onnxpb.TensorProto{Dims: []int64{2}, DataType: 1, RawData: []byte{1, 2, 3}}, nil, true},
		{&onnxpb.TensorProto{Dims: []int64{1}, DataType: 8}, nil, true},
		{&onnxpb.TensorProto{Dims: []int64{1}, DataType: 1, DataLocation: onnxpb.TensorProto_EXTERNAL}, nil, true},
	}
	for i, tc := range tests {
		got, err := tensorFromProto(tc.tp, "")
		if tc.err {
			if err == nil {
				t.Errorf("test %d: got %v, want an error", i, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("test %d: %v", i, err)
			continue
		}
		if !slices.Equal(got.ToFloat64(), tc.want) || !slices.Equal(got.Shape(), tc.tp.GetDims()) {
			t.Errorf("test %d: got %v %v, want %v", i, got, got.ToFloat64(), tc.want)
		}
	}
}

// FuzzReadModelInfo checks that the scan of arbitrary bytes returns an error
// or a result, and never panics.
func FuzzReadModelInfo(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "shared", "models", "*", "*.onnx"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) < 1<<20 {
			f.Add(b)
		}
	}
	f.Add([]byte{0x3a, 0x02, 0x5a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		readModelInfo(memSource(b))
	})
}
