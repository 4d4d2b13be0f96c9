package runtime_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/half"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// fromFloat64 makes a tensor of type dt holding vals.
func fromFloat64(t testing.TB, dt dtype.Type, shape []int64, vals []float64) *rt.Tensor {
	t.Helper()
	x, err := rt.Zeros(dt, shape)
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != len(vals) {
		t.Fatalf("fromFloat64: %d values for shape %v", len(vals), shape)
	}
	for i, v := range vals {
		switch d := x.Data().(type) {
		case []float32:
			d[i] = float32(v)
		case []float64:
			d[i] = v
		case []uint16:
			if dt == dtype.Float16 {
				d[i] = half.Float32ToFloat16(float32(v))
			} else {
				d[i] = half.Float32ToBFloat16(float32(v))
			}
		case []int64:
			d[i] = int64(v)
		case []int32:
			d[i] = int32(v)
		default:
			t.Fatalf("fromFloat64: %s not handled", dt)
		}
	}
	return x
}

// matMul returns x·w for row-major x [n,k] and w [k,m].
func matMul(x, w []float64, n, k, m int) []float64 {
	y := make([]float64, n*m)
	for i := range n {
		for j := range m {
			for l := range k {
				y[i*m+j] += x[i*k+l] * w[l*m+j]
			}
		}
	}
	return y
}

func seq(n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(i%7-3) * scale
	}
	return v
}

func TestRunDTypes(t *testing.T) {
	requireORT(t)
	for _, dt := range []dtype.Type{dtype.Float32, dtype.Float64, dtype.Float16, dtype.Int64, dtype.Int32} {
		t.Run(dt.String(), func(t *testing.T) {
			s := mustSession(t, matMulAddModel(t, dt))
			wv := []float64{1, -2, 0.5, 3, -1, 2}
			if dt == dtype.Int64 || dt == dtype.Int32 {
				wv = []float64{1, -2, 4, 3, -1, 2}
			}
			w := fromFloat64(t, dt, []int64{3, 2}, wv)
			// The same session runs batches of several sizes.
			for _, batch := range []int{1, 4, 2, 0} {
				xv := seq(batch*3, 1)
				x := fromFloat64(t, dt, []int64{int64(batch), 3}, xv)
				out, err := s.Run(map[string]*rt.Tensor{"x": x, "w": w}, nil)
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				y, z := out["y"], out["z"]
				if y == nil || z == nil {
					t.Fatalf("batch %d: outputs %v, want y and z", batch, out)
				}
				if y.DType() != dt || !slices.Equal(y.Shape(), []int64{int64(batch), 2}) {
					t.Errorf("batch %d: y is %v, want %s[%d 2]", batch, y, dt, batch)
				}
				if got, want := y.ToFloat64(), matMul(xv, wv, batch, 3, 2); !slices.Equal(got, want) {
					t.Errorf("batch %d: y = %v, want %v", batch, got, want)
				}
				wantZ := make([]float64, len(xv))
				for i, v := range xv {
					wantZ[i] = 2 * v
				}
				if got := z.ToFloat64(); !slices.Equal(got, wantZ) {
					t.Errorf("batch %d: z = %v, want %v", batch, got, wantZ)
				}
			}
		})
	}
}

func TestSessionFromFile(t *testing.T) {
	requireORT(t)
	for _, dt := range []dtype.Type{dtype.Float32, dtype.Float16} {
		b := matMulAddModel(t, dt)
		path := filepath.Join(t.TempDir(), "model.onnx")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fromFile, err := rt.NewSession(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fromFile.Close()
		fromBytes := mustSession(t, b)
		in := map[string]*rt.Tensor{
			"x": fromFloat64(t, dt, []int64{2, 3}, seq(6, 0.5)),
			"w": fromFloat64(t, dt, []int64{3, 2}, seq(6, 0.25)),
		}
		got, err := fromFile.Run(in, []string{"y"})
		if err != nil {
			t.Fatal(err)
		}
		want, err := fromBytes.Run(in, []string{"y"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Errorf("%s: got outputs %v, want only y", dt, got)
		}
		if !slices.Equal(got["y"].ToFloat64(), want["y"].ToFloat64()) {
			t.Errorf("%s: from file y = %v, from bytes %v", dt, got["y"].ToFloat64(), want["y"].ToFloat64())
		}
	}
}

func TestNewSessionErrors(t *testing.T) {
	requireORT(t)
	missing := filepath.Join(t.TempDir(), "nope.onnx")
	if _, err := rt.NewSession(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: got %v, want an error naming %s", err, missing)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.onnx")
	os.WriteFile(garbage, []byte("this is not a model"), 0o644)
	if _, err := rt.NewSession(garbage); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Errorf("garbage file: got %v, want an error naming %s", err, garbage)
	}
	if _, err := rt.NewSessionFromBytes(nil); err == nil {
		t.Error("nil bytes: got no error")
	}
	// A well-formed model whose op does not exist.
	g := &onnxpb.GraphProto{
		Input:  []*onnxpb.ValueInfoProto{tensorInfo("x", dtype.Float32, 1)},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, 1)},
		Node:   []*onnxpb.NodeProto{node("NoSuchOp", []string{"x"}, []string{"y"})},
	}
	_, err := rt.NewSessionFromBytes(marshalModel(t, g, 8, 17))
	if err == nil || !strings.Contains(err.Error(), "NoSuchOp") {
		t.Errorf("unknown op: got %v, want an error naming NoSuchOp", err)
	}
}

func TestInputsOutputs(t *testing.T) {
	requireORT(t)
	s := mustSession(t, matMulAddModel(t, dtype.Float32))
	wantIn := []rt.ValueInfo{
		{Name: "x", DType: dtype.Float32, Shape: []int64{-1, 3}, DimParams: []string{"batch", ""}},
		{Name: "w", DType: dtype.Float32, Shape: []int64{3, 2}, DimParams: []string{"", ""}},
	}
	wantOut := []rt.ValueInfo{
		{Name: "y", DType: dtype.Float32, Shape: []int64{-1, 2}, DimParams: []string{"batch", ""}},
		{Name: "z", DType: dtype.Float32, Shape: []int64{-1, 3}, DimParams: []string{"batch", ""}},
	}
	check := func(what string, got, want []rt.ValueInfo) {
		if len(got) != len(want) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Name != w.Name || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) ||
				!slices.Equal(g.DimParams, w.DimParams) || g.Optional != w.Optional {
				t.Errorf("%s %d: got %+v, want %+v", what, i, g, w)
			}
		}
	}
	check("inputs", s.Inputs(), wantIn)
	check("outputs", s.Outputs(), wantOut)
	if got, want := s.Inputs()[0].String(), "x float32[batch 3]"; got != want {
		t.Errorf("ValueInfo.String: got %q, want %q", got, want)
	}
	// The returned slices are copies.
	s.Inputs()[0].Shape[1] = 99
	if s.Inputs()[0].Shape[1] != 3 {
		t.Error("Inputs returned the session's own slice")
	}
}

func TestRunErrors(t *testing.T) {
	requireORT(t)
	s := mustSession(t, matMulAddModel(t, dtype.Float32))
	x := must(rt.NewFloat32([]int64{2, 3}, make([]float32, 6)))
	w := must(rt.NewFloat32([]int64{3, 2}, make([]float32, 6)))
	tests := []struct {
		reason  string
		inputs  map[string]*rt.Tensor
		outputs []string
		want    []string // substrings of the error
	}{
		{
			reason: "unknown input",
			inputs: map[string]*rt.Tensor{"x": x, "w": w, "bogus": x},
			want:   []string{`unknown input "bogus"`, "inputs: x, w"},
		},
		{
			reason: "wrong element type",
			inputs: map[string]*rt.Tensor{"x": must(rt.NewFloat64([]int64{2, 3}, make([]float64, 6))), "w": w},
			want:   []string{`input "x"`, "element type float64, want float32"},
		},
		{
			reason: "wrong rank",
			inputs: map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{6}, make([]float32, 6))), "w": w},
			want:   []string{`input "x"`, "shape [6] has rank 1, want rank 2", "float32[batch 3]"},
		},
		{
			reason: "wrong static dimension",
			inputs: map[string]*rt.Tensor{"x": x, "w": must(rt.NewFloat32([]int64{2, 3}, make([]float32, 6)))},
			want:   []string{`input "w"`, "shape [2 3] has 2 at axis 0, want 3"},
		},
		{
			reason: "missing input",
			inputs: map[string]*rt.Tensor{"x": x},
			want:   []string{`missing input "w"`, "float32[3 2]"},
		},
		{
			reason: "nil tensor",
			inputs: map[string]*rt.Tensor{"x": x, "w": nil},
			want:   []string{`input "w": nil tensor`},
		},
		{
			reason:  "unknown output",
			inputs:  map[string]*rt.Tensor{"x": x, "w": w},
			outputs: []string{"y", "nope"},
			want:    []string{`unknown output "nope"`, "outputs: y, z"},
		},
	}
	for i, tc := range tests {
		_, err := s.Run(tc.inputs, tc.outputs)
		if err == nil {
			t.Errorf("test %d (%s): got no error", i, tc.reason)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "runtime: in-memory model: ") {
			t.Errorf("test %d (%s): error %q lacks the package and model prefix", i, tc.reason, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("test %d (%s): error %q does not contain %q", i, tc.reason, msg, w)
			}
		}
	}
}

func TestCloseTwice(t *testing.T) {
	requireORT(t)
	s, err := rt.NewSessionFromBytes(addModel(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Bind(map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{1, 4}, make([]float32, 4)))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close of a binding of a closed session: %v", err)
	}
	x := must(rt.NewFloat32([]int64{1, 4}, make([]float32, 4)))
	if _, err := s.Run(map[string]*rt.Tensor{"x": x}, nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run after Close: got %v, want an error saying the session is closed", err)
	}
	if _, err := b.Run(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Binding.Run after Close: got %v, want an error saying it is closed", err)
	}
}

// TestScalarAndUnshapedOutputs covers outputs that onnxruntime_go cannot
// allocate: a declared scalar, and outputs with no declared shape, one of
// them float16.
func TestScalarAndUnshapedOutputs(t *testing.T) {
	requireORT(t)
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{tensorInfo("x", dtype.Float32, "n", 2)},
		Output: []*onnxpb.ValueInfoProto{
			tensorInfo("sum", dtype.Float32),
			unshapedInfo("sum2", dtype.Float32),
			unshapedInfo("double", dtype.Float32),
			unshapedInfo("half", dtype.Float16),
			tensorInfo("halfsum", dtype.Float16),
		},
		Node: []*onnxpb.NodeProto{
			node("ReduceSum", []string{"x"}, []string{"sum"}, intAttr("keepdims", 0)),
			node("Identity", []string{"sum"}, []string{"sum2"}),
			node("Add", []string{"x", "x"}, []string{"double"}),
			node("Cast", []string{"double"}, []string{"half"}, intAttr("to", int64(dtype.Float16))),
			node("Cast", []string{"sum"}, []string{"halfsum"}, intAttr("to", int64(dtype.Float16))),
		},
	}
	s := mustSession(t, marshalModel(t, g, 8, 17))
	for _, n := range []int{3, 1} {
		xs := make([]float32, 2*n)
		var sum float32
		for i := range xs {
			xs[i] = float32(i) + 0.5
			sum += xs[i]
		}
		x := must(rt.NewFloat32([]int64{int64(n), 2}, xs))
		out, err := s.Run(map[string]*rt.Tensor{"x": x}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"sum", "sum2"} {
			if got := out[name]; got.Rank() != 0 || got.Float32()[0] != sum {
				t.Errorf("n=%d: %s = %v %v, want scalar %v", n, name, got, got.Float32(), sum)
			}
		}
		if got := out["double"]; !slices.Equal(got.Shape(), []int64{int64(n), 2}) || got.Float32()[1] != 2*xs[1] {
			t.Errorf("n=%d: double = %v %v", n, got, got.Float32())
		}
		if got := out["half"]; got.DType() != dtype.Float16 || !slices.Equal(got.Shape(), []int64{int64(n), 2}) ||
			half.Float16ToFloat32(got.Float16()[1]) != 2*xs[1] {
			t.Errorf("n=%d: half = %v %v", n, got, got.ToFloat32())
		}
		if got := out["halfsum"]; got.DType() != dtype.Float16 || got.Rank() != 0 || got.ToFloat32()[0] != sum {
			t.Errorf("n=%d: halfsum = %v %v, want scalar %v", n, got, got.ToFloat32(), sum)
		}
	}
	// The shadow outputs stay hidden.
	if got := len(s.Outputs()); got != 5 {
		t.Errorf("Outputs: got %d, want 5", got)
	}
}

// optionalInputModel computes y = MatMul(x, w) where w has a default, the
// layout of adapters as inputs. static chooses a static or a dynamic batch.
func optionalInputModel(t testing.TB, ir int64, static bool) []byte {
	var batch dim = "batch"
	if static {
		batch = 2
	}
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{
			tensorInfo("x", dtype.Float32, batch, 2),
			tensorInfo("w", dtype.Float32, 2, 2),
		},
		Initializer: []*onnxpb.TensorProto{{Name: "w", Dims: []int64{2, 2}, DataType: int32(dtype.Float32), FloatData: []float32{1, 0, 0, 1}}},
		Output:      []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, batch, 2)},
		Node:        []*onnxpb.NodeProto{node("MatMul", []string{"x", "w"}, []string{"y"})},
	}
	return marshalModel(t, g, ir, 17)
}

func TestOptionalInputs(t *testing.T) {
	requireORT(t)
	x := must(rt.NewFloat32([]int64{2, 2}, []float32{1, 2, 3, 4}))
	w := must(rt.NewFloat32([]int64{2, 2}, []float32{2, 0, 0, 3}))
	for _, static := range []bool{true, false} {
		s := mustSession(t, optionalInputModel(t, 8, static))
		if in := s.Inputs(); len(in) != 2 || in[0].Optional || !in[1].Optional {
			t.Fatalf("static=%v: inputs %+v, want x required and w optional", static, in)
		}
		// Alternate between the default and a fed value on one session.
		for range 2 {
			out, err := s.Run(map[string]*rt.Tensor{"x": x}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := out["y"].Float32(), []float32{1, 2, 3, 4}; !slices.Equal(got, want) {
				t.Errorf("static=%v, default w: y = %v, want %v", static, got, want)
			}
			out, err = s.Run(map[string]*rt.Tensor{"x": x, "w": w}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := out["y"].Float32(), []float32{2, 6, 6, 12}; !slices.Equal(got, want) {
				t.Errorf("static=%v, fed w: y = %v, want %v", static, got, want)
			}
		}
	}
	// Before IR version 4 an initializer is a constant, not an input.
	s := mustSession(t, optionalInputModel(t, 3, false))
	if in := s.Inputs(); len(in) != 1 || in[0].Name != "x" {
		t.Errorf("IR 3: inputs %+v, want only x", in)
	}
	if _, err := s.Run(map[string]*rt.Tensor{"x": x, "w": w}, nil); err == nil || !strings.Contains(err.Error(), `unknown input "w"`) {
		t.Errorf("IR 3, feeding w: got %v, want an unknown input error", err)
	}
}

func TestRunInto(t *testing.T) {
	requireORT(t)
	s := mustSession(t, matMulAddModel(t, dtype.Float32))
	x := must(rt.NewFloat32([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6}))
	w := must(rt.NewFloat32([]int64{3, 2}, []float32{1, 0, 0, 1, 1, 1}))
	y := must(rt.Zeros(dtype.Float32, []int64{2, 2}))
	if err := s.RunInto(map[string]*rt.Tensor{"x": x, "w": w}, map[string]*rt.Tensor{"y": y}); err != nil {
		t.Fatal(err)
	}
	if got, want := y.Float32(), []float32{4, 5, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("y = %v, want %v", got, want)
	}
	bad := must(rt.Zeros(dtype.Float32, []int64{3, 2}))
	if err := s.RunInto(map[string]*rt.Tensor{"x": x, "w": w}, map[string]*rt.Tensor{"y": bad}); err == nil {
		t.Error("RunInto with a wrongly shaped output: got no error")
	}
	if err := s.RunInto(map[string]*rt.Tensor{"x": x, "w": w}, map[string]*rt.Tensor{"y": must(rt.Zeros(dtype.Int64, []int64{2, 2}))}); err == nil ||
		!strings.Contains(err.Error(), "element type int64, want float32") {
		t.Errorf("RunInto with an int64 output: got %v", err)
	}
}

func TestConcurrentRuns(t *testing.T) {
	requireORT(t)
	s := mustSession(t, matMulAddModel(t, dtype.Float64))
	w := fromFloat64(t, dtype.Float64, []int64{3, 2}, []float64{1, 2, 3, 4, 5, 6})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := g + 1
			xv := seq(batch*3, 1)
			x := fromFloat64(t, dtype.Float64, []int64{int64(batch), 3}, xv)
			for range 20 {
				out, err := s.Run(map[string]*rt.Tensor{"x": x, "w": w}, []string{"y"})
				if err != nil {
					errs <- err
					return
				}
				if got, want := out["y"].Float64(), matMul(xv, []float64{1, 2, 3, 4, 5, 6}, batch, 3, 2); !slices.Equal(got, want) {
					errs <- fmt.Errorf("batch %d: y = %v, want %v", batch, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestErrorsWrapORT(t *testing.T) {
	requireORT(t)
	// Reshape to a shape that does not fit fails inside ONNX Runtime.
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{
			tensorInfo("x", dtype.Float32, "n"),
			tensorInfo("shape", dtype.Int64, 1),
		},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, "m")},
		Node:   []*onnxpb.NodeProto{node("Reshape", []string{"x", "shape"}, []string{"y"})},
	}
	s := mustSession(t, marshalModel(t, g, 8, 17))
	_, err := s.Run(map[string]*rt.Tensor{
		"x":     must(rt.NewFloat32([]int64{3}, []float32{1, 2, 3})),
		"shape": must(rt.NewInt64([]int64{1}, []int64{4})),
	}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "runtime: in-memory model: run: ") {
		t.Errorf("got %v, want a wrapped ONNX Runtime error", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("error %v does not wrap the ONNX Runtime error", err)
	}
}

// TestWrongStaticOutputShape runs a model that declares a static output
// shape it does not produce; the run must still return what ONNX Runtime
// computes.
func TestWrongStaticOutputShape(t *testing.T) {
	requireORT(t)
	g := &onnxpb.GraphProto{
		Input:  []*onnxpb.ValueInfoProto{tensorInfo("x", dtype.Float32, "n", 2)},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, 2, 2)},
		Node:   []*onnxpb.NodeProto{node("Add", []string{"x", "x"}, []string{"y"})},
	}
	s := mustSession(t, marshalModel(t, g, 8, 17))
	x := must(rt.NewFloat32([]int64{3, 2}, []float32{1, 2, 3, 4, 5, 6}))
	for range 2 {
		out, err := s.Run(map[string]*rt.Tensor{"x": x}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := out["y"].Float32(), []float32{2, 4, 6, 8, 10, 12}; !slices.Equal(got, want) || out["y"].Shape()[0] != 3 {
			t.Errorf("y = %v %v, want [3 2] %v", out["y"], got, want)
		}
	}
	b, err := s.Bind(map[string]*rt.Tensor{"x": x}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for range 2 {
		out, err := b.Run()
		if err != nil {
			t.Fatal(err)
		}
		if got := out["y"].Shape(); !slices.Equal(got, []int64{3, 2}) {
			t.Errorf("binding: y shape %v, want [3 2]", got)
		}
	}
}

// TestOptionalInputExternalDefault loads from bytes a model whose optional
// input keeps its default in an external file, in the folder that the
// session's config entry names: the session reads the default from there,
// so the input can be fed or left out, with outputs bound or not.
func TestOptionalInputExternalDefault(t *testing.T) {
	requireORT(t)
	dir := t.TempDir()
	raw := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f} // identity 2×2
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{
			tensorInfo("x", dtype.Float32, "batch", 2),
			tensorInfo("w", dtype.Float32, 2, 2),
		},
		Initializer: []*onnxpb.TensorProto{{
			Name: "w", Dims: []int64{2, 2}, DataType: int32(dtype.Float32),
			DataLocation: onnxpb.TensorProto_EXTERNAL,
			ExternalData: []*onnxpb.StringStringEntryProto{{Key: "location", Value: "w.bin"}},
		}},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, "batch", 2)},
		Node:   []*onnxpb.NodeProto{node("MatMul", []string{"x", "w"}, []string{"y"})},
	}
	s := mustSession(t, marshalModel(t, g, 8, 17),
		rt.WithConfigEntry("session.model_external_initializers_file_folder_path", dir))
	x := must(rt.NewFloat32([]int64{1, 2}, []float32{3, 4}))
	w := must(rt.NewFloat32([]int64{2, 2}, []float32{2, 0, 0, 2}))
	out, err := s.Run(map[string]*rt.Tensor{"x": x}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := out["y"].Float32(); !slices.Equal(got, []float32{3, 4}) {
		t.Errorf("default w: y = %v, want [3 4]", got)
	}
	out, err = s.Run(map[string]*rt.Tensor{"x": x, "w": w}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := out["y"].Float32(); !slices.Equal(got, []float32{6, 8}) {
		t.Errorf("fed w: y = %v, want [6 8]", got)
	}
	y := must(rt.Zeros(dtype.Float32, []int64{1, 2}))
	if err := s.RunInto(map[string]*rt.Tensor{"x": x, "w": w}, map[string]*rt.Tensor{"y": y}); err != nil {
		t.Fatal(err)
	}
	if got := y.Float32(); !slices.Equal(got, []float32{6, 8}) {
		t.Errorf("RunInto with fed w: y = %v, want [6 8]", got)
	}
}

func TestCloseNil(t *testing.T) {
	var s *rt.Session
	if err := s.Close(); err != nil {
		t.Errorf("Close of a nil Session: got %v, want nil", err)
	}
	var b *rt.Binding
	if err := b.Close(); err != nil {
		t.Errorf("Close of a nil Binding: got %v, want nil", err)
	}
}
