package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestEmbedLayerNormalization(t *testing.T) {
	requireORT(t)
	const B, S, E, V, P = 2, 3, 4, 7, 6
	for _, c := range []struct {
		name              string
		segments, mask    bool
		positions, sumOut bool
	}{
		{name: "bert", segments: true, mask: true},
		{name: "gpt2_positions_sum", positions: true, sumOut: true},
		{name: "distilbert"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGraph(t, 17, dtype.Float32, declStatic)
			in := make([]string, 9)
			in[0] = g.int32s(i64s(B, S), 1, 5, 5, 0, 6, 2)
			in[2] = g.param("word", i64s(V, E), nil)
			in[3] = g.param("pos", i64s(P, E), nil)
			if c.segments {
				in[1] = g.int32s(i64s(B, S), 0, 0, 1, 1, 1, 0)
				in[4] = g.param("seg", i64s(2, E), nil)
			}
			in[5] = g.param("gamma", i64s(E), uniform(0.5, 1.5))
			in[6] = g.param("beta", i64s(E), nil)
			if c.mask {
				in[7] = g.int32s(i64s(B, S), 1, 1, 1, 1, 0, 0)
			}
			if c.positions {
				in[8] = g.int32s(i64s(B, S), 2, 3, 4, 0, 1, 2)
			}
			for len(in) > 0 && in[len(in)-1] == "" {
				in = in[:len(in)-1]
			}
			outs := g.nodeN("com.microsoft", "EmbedLayerNormalization", in, 3, graph.AttrFloat("epsilon", 1e-5))
			all := func(int) bool { return true }
			loss := g.maskedLoss(outs[0], i64s(B, S, E), all)
			if c.sumOut {
				loss = g.node("Add", []string{loss, g.maskedLoss(outs[2], i64s(B, S, E), all)})
			}
			var idx string
			if c.mask {
				// mask_index enters the loss as a float, so that a wrong count shows.
				idx = g.node("Cast", []string{outs[1]}, graph.AttrInt("to", int64(dtype.Float32)))
				loss = g.node("Add", []string{loss, g.node("ReduceSum", []string{idx}, graph.AttrInt("keepdims", 0))})
			}
			g.checkLoss(loss)
			g.checkForward(loss, outs[0], i64s(B, S, E), all, 1e-5)
			if c.mask {
				g.checkForward(loss, idx, i64s(B, 1, 1), all, 0)
			}
		})
	}
}

// TestBiasAdd holds BiasAdd, which ONNX Runtime runs on CUDA only, to its
// standard-op twin X + bias + skip.
func TestBiasAdd(t *testing.T) {
	requireORT(t)
	build := func(fused bool) (*testGraph, string) {
		g := newTestGraph(t, 17, dtype.Float32, declSymbolic)
		x := g.param("x", i64s(2, 3, 4), nil)
		b := g.param("bias", i64s(4), nil)
		skip := g.param("skip", i64s(2, 3, 4), nil)
		var y string
		if fused {
			y = g.nodeN("com.microsoft", "BiasAdd", []string{x, b, skip}, 1)[0]
		} else {
			y = g.node("Add", []string{g.node("Add", []string{x, b}), skip})
		}
		return g, g.maskedLoss(y, i64s(2, 3, 4), func(int) bool { return true })
	}
	a, la := build(true)
	b, lb := build(false)
	sameGradients(t, a, la, b, lb)
}

func TestFusedMatMul(t *testing.T) {
	requireORT(t)
	for _, c := range []struct {
		name           string
		a, b           []int64
		transA, transB int64
		alpha          float32
	}{
		{name: "plain", a: i64s(2, 3, 4), b: i64s(4, 5)},
		{name: "transB_alpha", a: i64s(2, 3, 4), b: i64s(2, 5, 4), transB: 1, alpha: 0.5},
		{name: "transA", a: i64s(4, 3), b: i64s(4, 5), transA: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGraph(t, 17, dtype.Float32, declSymbolic)
			a := g.param("a", c.a, nil)
			b := g.param("b", c.b, nil)
			attrs := []*onnxpb.AttributeProto{graph.AttrInt("transA", c.transA), graph.AttrInt("transB", c.transB)}
			if c.alpha != 0 {
				attrs = append(attrs, graph.AttrFloat("alpha", c.alpha))
			}
			g.check(g.nodeN("com.microsoft", "FusedMatMul", []string{a, b}, 1, attrs...)[0])
		})
	}
}
