package runtime_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
	"google.golang.org/protobuf/proto"
)

// inChild runs the calling test again in a child process, so that a crash
// inside ONNX Runtime fails the test instead of killing the test binary. It
// returns true in the child, which then runs the test's body, and false in
// the parent, once the child has passed.
func inChild(t *testing.T) bool {
	t.Helper()
	const env = "PEFTONNX_RUNTIME_TEST_CHILD"
	if os.Getenv(env) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		if len(out) > 8<<10 {
			out = append(out[:8<<10], "\n[...]"...)
		}
		t.Fatalf("%s failed in a child process (%v):\n%s", t.Name(), err, out)
	}
	return false
}

// float16Init returns a float16 initializer holding vals rounded to float16.
func float16Init(name string, dims []int64, vals []float32) *onnxpb.TensorProto {
	h := must(rt.NewFloat16FromFloat32(dims, vals)).Float16()
	raw := make([]byte, 2*len(h))
	for i, v := range h {
		binary.LittleEndian.PutUint16(raw[2*i:], v)
	}
	return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(dtype.Float16), RawData: raw}
}

var loraW = []float32{1, 0.5, 0, -1, 0.25, 1, 2, 0, 0, -0.5, 1, 0.75, 1.5, 0, 0.25, 1}

// loraFloat16Model computes y = x·W + x·A·B in float16, with x [n,4] and a
// constant W, where A [4,r] and B [r,4] are inputs with the defaults a0 and
// b0: the layout of LoRA adapters as inputs, which crashed ONNX Runtime 1.24
// at ORT_ENABLE_ALL. n is 2 where static, else dynamic.
func loraFloat16Model(t testing.TB, static bool, a0, b0 []float32) []byte {
	var n dim = "n"
	if static {
		n = 2
	}
	r0 := int64(len(a0) / 4)
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{
			tensorInfo("x", dtype.Float16, n, 4),
			tensorInfo("A", dtype.Float16, 4, "r"),
			tensorInfo("B", dtype.Float16, "r", 4),
		},
		Initializer: []*onnxpb.TensorProto{
			float16Init("W", []int64{4, 4}, loraW),
			float16Init("A", []int64{4, r0}, a0),
			float16Init("B", []int64{r0, 4}, b0),
		},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float16, n, 4)},
		Node: []*onnxpb.NodeProto{
			node("MatMul", []string{"x", "W"}, []string{"base"}),
			node("MatMul", []string{"x", "A"}, []string{"h"}),
			node("MatMul", []string{"h", "B"}, []string{"d"}),
			node("Add", []string{"base", "d"}, []string{"y"}),
		},
	}
	return marshalModel(t, g, 8, 17)
}

// loraWant is x·W + x·A·B for x [2,4] and A [4,r].
func loraWant(x, a, b []float32) []float32 {
	y := matMul32(x, loraW, 2, 4, 4)
	if r := len(a) / 4; r > 0 {
		d := matMul32(matMul32(x, a, 2, 4, r), b, 2, r, 4)
		for i := range y {
			y[i] += d[i]
		}
	}
	return y
}

// TestFloat16Defaults opens models with float16 inputs that have defaults at
// every optimization level, from bytes and from a file, and runs them with
// and without the inputs fed, through Run, RunInto and a Binding.
func TestFloat16Defaults(t *testing.T) {
	requireORT(t)
	if !inChild(t) {
		return
	}
	x := []float32{1, 2, -1, 0.5, 0, 1, 1, -2}
	a := []float32{0.5, 0, 1, 1, 0, -1, 0.25, 0.5} // rank 2
	b := []float32{1, 0, 0.5, 2, -1, 1, 0, 0.25}
	a1, b1 := []float32{1, 0, 0.5, -1}, []float32{0.5, 0.25, 0, 1} // rank 1
	xt := must(rt.NewFloat16FromFloat32([]int64{2, 4}, x))
	feed := func(a, b []float32) map[string]*rt.Tensor {
		r := int64(len(a) / 4)
		return map[string]*rt.Tensor{
			"x": xt,
			"A": must(rt.NewFloat16FromFloat32([]int64{4, r}, a)),
			"B": must(rt.NewFloat16FromFloat32([]int64{r, 4}, b)),
		}
	}
	dir := t.TempDir()
	levels := []rt.OptimizationLevel{rt.OptimizeAll, rt.OptimizeExtended, rt.OptimizeBasic, rt.OptimizeNone}
	for _, static := range []bool{false, true} {
		for _, dflt := range [][2][]float32{{nil, nil}, {a1, b1}} {
			model := loraFloat16Model(t, static, dflt[0], dflt[1])
			path := filepath.Join(dir, "model.onnx")
			if err := os.WriteFile(path, model, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, level := range levels {
				for _, fromFile := range []bool{false, true} {
					name := func(what string) string {
						return fmt.Sprintf("static=%v, default rank %d, level %s, from file=%v: %s",
							static, len(dflt[0])/4, level, fromFile, what)
					}
					opts := []rt.Option{rt.WithOptimizationLevel(level), rt.WithIntraOpThreads(1)}
					var s *rt.Session
					var err error
					if fromFile {
						s, err = rt.NewSession(path, opts...)
					} else {
						s, err = rt.NewSessionFromBytes(model, opts...)
					}
					if err != nil {
						t.Fatalf("%s: %v", name("open"), err)
					}
					in := s.Inputs()
					if len(in) != 3 || !in[1].Optional || !in[2].Optional || in[1].DType != dtype.Float16 {
						t.Fatalf("%s: inputs %v, want A and B optional float16", name("inputs"), in)
					}
					check := func(what string, got *rt.Tensor, want []float32) {
						t.Helper()
						if got == nil {
							t.Errorf("%s: no output", name(what))
						} else if g := got.ToFloat32(); !close32(g, want, 1e-2) {
							t.Errorf("%s: y = %v, want %v", name(what), g, want)
						}
					}
					base := loraWant(x, dflt[0], dflt[1])
					steps := []struct {
						what string
						in   map[string]*rt.Tensor
						want []float32
					}{
						{"defaults", map[string]*rt.Tensor{"x": xt}, base},
						{"rank 2 fed", feed(a, b), loraWant(x, a, b)},
						{"rank 0 fed", feed(nil, nil), loraWant(x, nil, nil)},
						{"defaults again", map[string]*rt.Tensor{"x": xt}, base},
					}
					for _, st := range steps {
						out, err := s.Run(st.in, nil)
						if err != nil {
							t.Fatalf("%s: %v", name(st.what), err)
						}
						check("Run, "+st.what, out["y"], st.want)
						if static {
							y := must(rt.Zeros(dtype.Float16, []int64{2, 4}))
							if err := s.RunInto(st.in, map[string]*rt.Tensor{"y": y}); err != nil {
								t.Fatalf("%s: %v", name("RunInto, "+st.what), err)
							}
							check("RunInto, "+st.what, y, st.want)
						}
					}
					bd, err := s.Bind(map[string]*rt.Tensor{"x": xt}, nil)
					if err != nil {
						t.Fatalf("%s: %v", name("Bind"), err)
					}
					runBound := func(what string, want []float32) {
						t.Helper()
						out, err := bd.Run()
						if err != nil {
							t.Fatalf("%s: %v", name(what), err)
						}
						check(what, out["y"], want)
					}
					runBound("binding, defaults", base)
					fa := feed(a, b)
					if err := bd.SetInput("A", fa["A"]); err != nil {
						t.Fatal(err)
					}
					if err := bd.SetInput("B", fa["B"]); err != nil {
						t.Fatal(err)
					}
					runBound("binding, rank 2 fed", loraWant(x, a, b))
					if err := bd.SetInput("A", nil); err != nil {
						t.Fatal(err)
					}
					if err := bd.SetInput("B", nil); err != nil {
						t.Fatal(err)
					}
					runBound("binding, defaults again", base)
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// TestFloat16DefaultsUnreadable opens, from bytes, a model whose float16
// default lives in an external file that the session cannot read to feed it
// itself, so that it must disable the optimizer that crashes instead; a
// list of optimizers that the caller disables is kept.
func TestFloat16DefaultsUnreadable(t *testing.T) {
	requireORT(t)
	if !inChild(t) {
		return
	}
	dir := t.TempDir()
	a0, b0 := []float32{1, 0, 0.5, -1}, []float32{0.5, 0.25, 0, 1}
	var model onnxpb.ModelProto
	if err := proto.Unmarshal(loraFloat16Model(t, true, a0, b0), &model); err != nil {
		t.Fatal(err)
	}
	for _, init := range model.Graph.Initializer {
		if init.Name == "A" {
			if err := os.WriteFile(filepath.Join(dir, "a.bin"), init.RawData, 0o644); err != nil {
				t.Fatal(err)
			}
			init.RawData = nil
			init.DataLocation = onnxpb.TensorProto_EXTERNAL
			init.ExternalData = []*onnxpb.StringStringEntryProto{{Key: "location", Value: "a.bin"}}
		}
	}
	b := marshalModel(t, model.Graph, 8, 17)
	x := []float32{1, 2, -1, 0.5, 0, 1, 1, -2}
	xt := must(rt.NewFloat16FromFloat32([]int64{2, 4}, x))
	for _, extra := range [][]rt.Option{nil, {rt.WithConfigEntry("optimization.disable_specified_optimizers", "NchwcTransformer")}} {
		opts := append([]rt.Option{rt.WithConfigEntry("session.model_external_initializers_file_folder_path", dir)}, extra...)
		s := mustSession(t, b, opts...)
		out, err := s.Run(map[string]*rt.Tensor{"x": xt}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := out["y"].ToFloat32(), loraWant(x, a0, b0); !close32(got, want, 1e-2) {
			t.Errorf("defaults: y = %v, want %v", got, want)
		}
		out, err = s.Run(map[string]*rt.Tensor{
			"x": xt,
			"A": must(rt.NewFloat16([]int64{4, 0}, nil)),
			"B": must(rt.NewFloat16([]int64{0, 4}, nil)),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := out["y"].ToFloat32(), loraWant(x, nil, nil); !close32(got, want, 1e-2) {
			t.Errorf("rank 0 fed: y = %v, want %v", got, want)
		}
	}
}
