package quant_test

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// requireORT skips the test when the ONNX Runtime library cannot be found.
func requireORT(t testing.TB) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// normals returns n values from N(0, std²), deterministic in seed.
func normals(n int, std float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	return v
}

// refMatMul returns a·w (+ bias) in float64, for a [m, k] and w [k, n].
func refMatMul(a []float32, m, k int, w []float32, n int, bias []float32) []float64 {
	y := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for l := range k {
				s += float64(a[i*k+l]) * float64(w[l*n+j])
			}
			if bias != nil {
				s += float64(bias[j])
			}
			y[i*n+j] = s
		}
	}
	return y
}

// relMaxErr returns max|got−want| / max|want|: 0 where they are equal,
// +Inf where the lengths differ or a value is NaN.
func relMaxErr(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, scale float64
	for i := range want {
		e := math.Abs(float64(got[i]) - want[i])
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = max(d, e)
		scale = max(scale, math.Abs(want[i]))
	}
	if d == 0 {
		return 0
	}
	return d / scale
}

// TestRelMaxErrSeesNaN: a NaN, on either side or both, is no match; equal
// zeros are.
func TestRelMaxErrSeesNaN(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		got  []float32
		want []float64
	}{{[]float32{1, float32(nan)}, []float64{1, 2}}, {[]float32{1, 2}, []float64{1, nan}}, {[]float32{float32(nan)}, []float64{nan}}} {
		if d := relMaxErr(c.got, c.want); !math.IsInf(d, 1) {
			t.Errorf("relMaxErr(%v, %v) = %v, want +Inf", c.got, c.want, d)
		}
	}
	if d := relMaxErr([]float32{0}, []float64{0}); d != 0 {
		t.Errorf("relMaxErr of zeros = %v, want 0", d)
	}
}

// nbitsCase describes a one-node MatMulNBits model.
type nbitsCase struct {
	w     *quant.Weight
	bias  []float32
	level int
	// flat stores scales and zero points as the 1-D tensors of ONNX
	// Runtime's own quantizer instead of the spec's 2-D ones.
	flat bool
	// omitBits leaves the bits attribute out, for its default.
	omitBits bool
	// gidx adds a g_idx input that w does not carry, for the forms that
	// Weight refuses.
	gidx []int32
}

// model builds Y = MatMulNBits(A, …) with A [M, K] of the scales' type.
func (c nbitsCase) model(t *testing.T) *graph.Model {
	t.Helper()
	w := c.w
	names := quant.BuilderNames("w", w.Bits)
	inits, err := w.Tensors(names)
	if err != nil {
		t.Fatal(err)
	}
	if c.flat {
		for _, x := range inits[1:] {
			if x.Name != names.GIdx {
				x.Dims = []int64{graph.NumElements(x.Dims)}
			}
		}
	}
	bias := ""
	if c.bias != nil {
		bias = "bias"
		inits = append(inits, graph.NewFloat32Tensor(bias, w.ScaleType, []int64{int64(w.N)}, c.bias))
	}
	node, err := w.Node(names, quant.NodeOptions{Name: "/l/MatMul_Q4", A: "A", Y: "Y", Bias: bias, AccuracyLevel: c.level})
	if err != nil {
		t.Fatal(err)
	}
	if c.gidx != nil {
		b := make([]byte, 4*len(c.gidx))
		for i, g := range c.gidx {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(g))
		}
		m := int64(len(c.gidx))
		inits = append(inits, &onnxpb.TensorProto{Name: "g_idx", DataType: int32(dtype.Int32), Dims: []int64{m}, RawData: b})
		for len(node.Input) <= quant.InputGIdx {
			node.Input = append(node.Input, "")
		}
		node.Input[quant.InputGIdx] = "g_idx"
	}
	if c.omitBits {
		kept := node.Attribute[:0]
		for _, a := range node.Attribute {
			if a.Name != "bits" {
				kept = append(kept, a)
			}
		}
		node.Attribute = kept
	}
	m := graph.New(&onnxpb.ModelProto{IrVersion: 8, Graph: &onnxpb.GraphProto{Name: "nbits"}}, "")
	m.SetOpset("", 17)
	m.SetOpset(quant.Domain, 1)
	m.AddInput(graph.SymbolicTensorInfo("A", w.ScaleType, []graph.Dim{graph.DimParam("M"), graph.DimValue(int64(w.K))}))
	m.AddOutput(graph.SymbolicTensorInfo("Y", w.ScaleType, []graph.Dim{graph.DimParam("M"), graph.DimValue(int64(w.N))}))
	for _, x := range inits {
		m.AddInitializer(x)
	}
	m.AddNode(node)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

// run runs the model on a [m, K] and returns Y as float32, or the error
// of ONNX Runtime.
func (c nbitsCase) run(t *testing.T, a []float32, m int) ([]float32, error) {
	t.Helper()
	b, err := c.model(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var x *rt.Tensor
	shape := []int64{int64(m), int64(c.w.K)}
	if c.w.ScaleType == dtype.Float16 {
		x, err = rt.NewFloat16FromFloat32(shape, a)
	} else {
		x, err = rt.NewFloat32(shape, a)
	}
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(map[string]*rt.Tensor{"A": x}, nil)
	if err != nil {
		return nil, err
	}
	return res["Y"].ToFloat32(), nil
}
