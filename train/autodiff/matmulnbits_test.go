package autodiff

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestMatMulNBits differentiates MatMulNBits with respect to its input
// and bias, in each width and zero-point form, with K not a multiple of
// the block size, against finite differences of ONNX Runtime's int4
// kernel. The training graph keeps the packed tensors bit for bit and, once
// ONNX Runtime has optimized it, holds no float copy of the weight.
func TestMatMulNBits(t *testing.T) {
	requireORT(t)
	const K, N = 40, 6
	for _, c := range []struct {
		bits      int
		symmetric bool
		bias      bool
		slabRows  int64 // dequantize this many output rows at a time (0: all)
	}{
		{bits: 4, bias: true, slabRows: 4}, // slabs of 4 and 2 rows, summed
		{bits: 4, symmetric: true},
		{bits: 4, bias: true},
		{bits: 8, symmetric: true, bias: true},
		{bits: 2},
	} {
		t.Run(fmt.Sprintf("bits%d_symmetric%v_bias%v_slabs%d", c.bits, c.symmetric, c.bias, c.slabRows), func(t *testing.T) {
			if c.slabRows > 0 {
				defer func(v int64) { chunkElems = v }(chunkElems)
				chunkElems = c.slabRows * K
			}
			// ONNX Runtime's shape inference of MatMulNBits wants a bias of
			// static shape.
			mode := declSymbolic
			if c.bias {
				mode = declStatic
			}
			g := newTestGraph(t, 17, dtype.Float32, mode)
			r := rand.New(rand.NewPCG(3, uint64(c.bits)))
			w := make([]float32, K*N)
			for i := range w {
				w[i] = float32(r.NormFloat64())
			}
			qw, err := quant.Quantize(w, K, N, quant.Options{Bits: c.bits, BlockSize: 16, Symmetric: c.symmetric})
			if err != nil {
				t.Fatal(err)
			}
			names := quant.BuilderNames("layer.weight", c.bits)
			ts, err := qw.Tensors(names)
			if err != nil {
				t.Fatal(err)
			}
			for _, tp := range ts {
				g.m.AddInitializer(tp)
			}
			a := g.param("a", i64s(2, 3, K), nil)
			o := quant.NodeOptions{Name: "layer/MatMul_Q4", A: a, Y: "y"}
			if c.bias {
				o.Bias = g.param("bias", i64s(N), nil)
			}
			node, err := qw.Node(names, o)
			if err != nil {
				t.Fatal(err)
			}
			g.m.AddNode(node)
			tm := g.check("y")

			for _, tp := range ts {
				got := tm.Initializer(tp.Name)
				if got == nil || !bytes.Equal(got.RawData, tp.RawData) && !equalFloats(tm, got, g.m.Initializer(tp.Name)) {
					t.Errorf("packed tensor %s changed or is missing in the training graph", tp.Name)
				}
			}
			// After ONNX Runtime's optimizations, no initializer holds K·N
			// floats: the dequantized weight is made in the run, not kept.
			path := filepath.Join(t.TempDir(), "optimized.onnx")
			b, err := tm.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1), rt.WithOptimizedModelPath(path))
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			opt, err := graph.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Close()
			for _, init := range opt.Graph().Initializer {
				if graph.TypeOf(init).IsFloat() && graph.NumElements(init.Dims) >= K*N {
					t.Errorf("the optimized training graph holds a float initializer %s %v: a resident copy of the weight", init.Name, init.Dims)
				}
			}
			if _, err := os.Stat(path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// equalFloats reports whether two float initializers hold the same values.
func equalFloats(m *graph.Model, a, b *onnxpb.TensorProto) bool {
	x, err1 := m.Float32s(a)
	y, err2 := m.Float32s(b)
	if err1 != nil || err2 != nil || len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// TestTimesNBits runs TimesNBits and TimesTransposedNBits, in each width
// and zero-point form, with K not a multiple of the block size and N
// split into slabs or not: x·W (+ bias) equals ONNX Runtime's own
// MatMulNBits kernel on the same node, g·Wᵀ equals the product with the
// weight that package quant dequantizes in Go, and neither adds a
// MatMulNBits node.
func TestTimesNBits(t *testing.T) {
	requireORT(t)
	const M, K, N = 5, 40, 6
	for _, c := range []struct {
		bits      int
		symmetric bool
		bias      bool
		slabRows  int64 // dequantize this many output rows at a time (0: all)
	}{
		{bits: 4, slabRows: 4}, // slabs of 4 and 2 rows
		{bits: 4, symmetric: true, bias: true},
		{bits: 8, symmetric: true, bias: true, slabRows: 4},
		{bits: 2, slabRows: 5},
	} {
		t.Run(fmt.Sprintf("bits%d_symmetric%v_bias%v_slabs%d", c.bits, c.symmetric, c.bias, c.slabRows), func(t *testing.T) {
			if c.slabRows > 0 {
				defer func(v int64) { chunkElems = v }(chunkElems)
				chunkElems = c.slabRows * K
			}
			g := newTestGraph(t, 17, dtype.Float32, declStatic)
			r := rand.New(rand.NewPCG(5, uint64(c.bits)))
			w := make([]float32, K*N)
			for i := range w {
				w[i] = float32(r.NormFloat64())
			}
			qw, err := quant.Quantize(w, K, N, quant.Options{Bits: c.bits, BlockSize: 16, Symmetric: c.symmetric})
			if err != nil {
				t.Fatal(err)
			}
			names := quant.BuilderNames("layer.weight", c.bits)
			ts, err := qw.Tensors(names)
			if err != nil {
				t.Fatal(err)
			}
			for _, tp := range ts {
				g.m.AddInitializer(tp)
			}
			x := g.input("x", i64s(M, K), nil)
			dy := g.input("dy", i64s(M, N), nil)
			o := quant.NodeOptions{Name: "layer/MatMul_Q4", A: x, Y: "y"}
			bias := make([]float32, N)
			if c.bias {
				for i := range bias {
					bias[i] = float32(r.NormFloat64())
				}
				o.Bias = "bias"
				g.m.AddInitializer(graph.NewFloat32Tensor("bias", dtype.Float32, i64s(N), bias))
			}
			node, err := qw.Node(names, o)
			if err != nil {
				t.Fatal(err)
			}
			g.m.AddNode(node)
			xw, err := TimesNBits(g.m, node, x, "/times")
			if err != nil {
				t.Fatal(err)
			}
			gwt, err := TimesTransposedNBits(g.m, node, dy, "/times_transposed")
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range g.m.Graph().Node {
				if quant.IsNode(n) && n != node {
					t.Errorf("node %s is a new MatMulNBits", n.Name)
				}
			}
			for _, v := range []string{"y", xw, gwt} {
				g.m.AddOutput(graph.TensorInfo(v, dtype.Float32, nil))
			}
			res, err := g.session(g.m).Run(g.tensors("", 0, 0), []string{"y", xw, gwt})
			if err != nil {
				t.Fatal(err)
			}
			// ONNX Runtime's kernel against TimesNBits.
			want, got := res["y"].Float32(), res[xw].Float32()
			if d, big := maxDiff(got, want); big == 0 || d > 1e-5*big {
				t.Errorf("x·W: max |Δ| %.3g against ONNX Runtime's MatMulNBits, max |y| %.3g", d, big)
			}
			// Go's dequantized weight against TimesTransposedNBits.
			deq, err := qw.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			gv := g.feeds[dy].f
			wantT := make([]float32, M*K)
			for i := range M {
				for k := range K {
					var s float64
					for n := range N {
						s += gv[i*N+n] * float64(deq[k*N+n])
					}
					wantT[i*K+k] = float32(s)
				}
			}
			if d, big := maxDiff(res[gwt].Float32(), wantT); big == 0 || d > 1e-5*big {
				t.Errorf("g·Wᵀ: max |Δ| %.3g against Go's dequantized weight, max %.3g", d, big)
			}
		})
	}
}

// maxDiff returns max|got − want| and max|want|; d is +Inf where the
// lengths differ or a value is NaN.
func maxDiff(got, want []float32) (d, big float64) {
	if len(got) != len(want) {
		return math.Inf(1), 1
	}
	for i := range want {
		e := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(e) {
			e = math.Inf(1)
		}
		d = math.Max(d, e)
		big = math.Max(big, math.Abs(float64(want[i])))
	}
	return d, big
}

// TestMaxDiffSeesNaN: a NaN, on either side or both, is no match.
func TestMaxDiffSeesNaN(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range [][2][]float32{{{1, nan}, {1, 2}}, {{1, 2}, {1, nan}}, {{nan}, {nan}}} {
		if d, _ := maxDiff(c[0], c[1]); !math.IsInf(d, 1) {
			t.Errorf("maxDiff(%v, %v) = %v, want +Inf", c[0], c[1], d)
		}
	}
	if d, big := maxDiff([]float32{1, 2}, []float32{1, 2.5}); d != 0.5 || big != 2.5 {
		t.Errorf("maxDiff = %v, %v, want 0.5, 2.5", d, big)
	}
}
