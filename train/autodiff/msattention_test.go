package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestAttention(t *testing.T) {
	requireORT(t)
	const B, S, E, N = 2, 3, 8, 2
	cases := []struct {
		name        string
		mask        func(g *testGraph, total int64) string
		keep        func(row int) bool // rows whose queries see some key
		past, uni   bool
		bias, abias bool
		sizes       []int64 // qkv_hidden_sizes
		scale       float32
	}{
		{name: "plain", bias: true},
		{name: "mask_index_end", bias: true, mask: func(g *testGraph, total int64) string { return g.int32s(i64s(B), 3, 2) }},
		// ONNX Runtime 1.24's CPU kernel crashes without the bias input, so
		// every case has one.
		{name: "mask_index_end_start", bias: true, mask: func(g *testGraph, total int64) string { return g.int32s(i64s(2*B), 3, 3, 0, 1) }},
		{name: "raw_2d", bias: true, mask: func(g *testGraph, total int64) string { return g.int32s(i64s(B, total), 1, 0, 1, 1, 1, 0) }},
		{name: "raw_3d_scale", bias: true, scale: 0.5, mask: func(g *testGraph, total int64) string {
			return g.int32s(i64s(B, S, total), 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1)
		}},
		{name: "gpt2_past_unidirectional_raw", past: true, uni: true, bias: true, mask: func(g *testGraph, total int64) string {
			return g.int32s(i64s(B, total), 1, 1, 1, 1, 1, 0, 1, 1, 1, 1)
		}},
		{name: "unidirectional_attention_bias", bias: true, uni: true, abias: true},
		{name: "qkv_hidden_sizes", bias: true, sizes: i64s(8, 8, 4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// ONNX Runtime's shape inference of Attention needs static dims.
			g := newTestGraph(t, 17, dtype.Float32, declStatic)
			hq, hv := int64(E), int64(E)
			width := int64(3 * E)
			if c.sizes != nil {
				hq, hv, width = c.sizes[0], c.sizes[2], c.sizes[0]+c.sizes[1]+c.sizes[2]
			}
			in := make([]string, 6)
			in[0] = g.param("x", i64s(B, S, E), nil)
			in[1] = g.param("w", i64s(E, width), nil)
			if c.bias {
				in[2] = g.param("b", i64s(width), nil)
			}
			total := int64(S)
			const P = 2
			if c.past {
				in[4] = g.param("past", i64s(2, B, N, P, hq/N), nil)
				total += P
			}
			if c.mask != nil {
				in[3] = c.mask(g, total)
			}
			if c.abias {
				in[5] = g.randFloats(i64s(1, N, S, total), uniform(-1, 0))
			}
			for len(in) > 0 && in[len(in)-1] == "" {
				in = in[:len(in)-1]
			}
			attrs := []*onnxpb.AttributeProto{graph.AttrInt("num_heads", N)}
			if c.uni {
				attrs = append(attrs, graph.AttrInt("unidirectional", 1))
			}
			if c.sizes != nil {
				attrs = append(attrs, graph.AttrInts("qkv_hidden_sizes", c.sizes...))
			}
			if c.scale != 0 {
				attrs = append(attrs, graph.AttrFloat("scale", c.scale))
			}
			nout := 1
			if c.past {
				nout = 2
			}
			outs := g.nodeN("com.microsoft", "Attention", in, nout, attrs...)
			all := func(int) bool { return true }
			loss := g.maskedLoss(outs[0], i64s(B, S, hv), all)
			if c.past {
				loss = g.node("Add", []string{loss, g.maskedLoss(outs[1], i64s(2, B, N, total, hq/N), all)})
			}
			g.checkLoss(loss)
			g.checkForward(loss, outs[0], i64s(B, S, hv), all, 1e-5)
		})
	}
}
