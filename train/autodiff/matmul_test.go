package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestMatMul(t *testing.T) {
	requireORT(t)
	cases := []struct{ a, b []int64 }{
		{i64s(3, 4), i64s(4, 5)},
		{i64s(2, 3, 4), i64s(4, 5)},       // x·W, the linear layer
		{i64s(2, 3, 4), i64s(2, 4, 5)},    // batched
		{i64s(2, 1, 3, 4), i64s(3, 4, 2)}, // broadcast batch dims on both sides
		{i64s(4), i64s(2, 4, 3)},          // 1-D left
		{i64s(2, 3, 4), i64s(4)},          // 1-D right
		{i64s(4), i64s(4)},                // dot product
	}
	for _, c := range cases {
		t.Run(shapeName(c.a, c.b), func(t *testing.T) {
			forModes(t, []int64{11, 17}, []declMode{declStatic, declSymbolic}, func(t *testing.T, opset int64, mode declMode) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				a := g.param("a", c.a, nil)
				b := g.param("b", c.b, nil)
				g.check(g.node("MatMul", []string{a, b}))
			})
		})
	}
}

func TestGemm(t *testing.T) {
	requireORT(t)
	for _, ta := range []int64{0, 1} {
		for _, tb := range []int64{0, 1} {
			for _, cshape := range [][]int64{nil, {5}, {3, 1}, {3, 5}, {}} {
				name := "transA" + string(rune('0'+ta)) + "_transB" + string(rune('0'+tb)) + "_C" + shapeName(cshape)
				if cshape == nil {
					name += "none"
				}
				t.Run(name, func(t *testing.T) {
					g := newTestGraph(t, 11, dtype.Float64, declStatic)
					ad, bd := i64s(3, 4), i64s(4, 5)
					if ta == 1 {
						ad = i64s(4, 3)
					}
					if tb == 1 {
						bd = i64s(5, 4)
					}
					in := []string{g.param("a", ad, nil), g.param("b", bd, nil)}
					if cshape != nil {
						in = append(in, g.param("c", cshape, nil))
					}
					attrs := []*onnxpb.AttributeProto{graph.AttrInt("transA", ta), graph.AttrInt("transB", tb),
						graph.AttrFloat("alpha", 0.75), graph.AttrFloat("beta", 1.5)}
					g.check(g.node("Gemm", in, attrs...))
				})
			}
		}
	}
}

// TestMatMulFrozenWeight checks that a frozen weight gets no gradient
// computed: the LoRA case, where W is large and only A and B train.
func TestMatMulFrozenWeight(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 17, dtype.Float64, declStatic)
	x := g.param("x", i64s(2, 3), nil)
	w := g.randFloats(i64s(3, 4), nil)
	tm := g.check(g.node("MatMul", []string{x, w}))
	matmuls := 0
	for _, n := range tm.Graph().Node {
		if n.OpType == "MatMul" || n.OpType == "Gemm" {
			matmuls++
		}
	}
	if matmuls != 2 {
		t.Errorf("training graph has %d MatMul/Gemm nodes, want 2 (forward and dX only)", matmuls)
	}
}
