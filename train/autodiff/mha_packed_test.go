package autodiff

import (
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TestMultiHeadAttentionForms covers the layouts and masks beyond
// TestMultiHeadAttention's: packed QKV and packed KV, unidirectional with
// a past, and the [B] and [B, S, T] key padding masks.
func TestMultiHeadAttentionForms(t *testing.T) {
	requireORT(t)
	const B, S, P, N, H = 2, 3, 2, 2, 4
	cases := []struct {
		name                string
		packedQKV, packedKV bool
		bias, past, uni     bool
		mask                func(g *testGraph, total int64) string
	}{
		{name: "unidirectional_past", uni: true, past: true},
		{name: "lengths_mask", mask: func(g *testGraph, total int64) string { return g.int32s(i64s(B), 2, 3) }},
		{name: "mask_3d_unidirectional", uni: true, mask: func(g *testGraph, total int64) string {
			return g.int32s(i64s(B, S, total), 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGraph(t, 17, dtype.Float32, declStatic)
			in := make([]string, 8)
			in[0] = g.param("q", i64s(B, S, N*H), nil)
			in[1] = g.param("k", i64s(B, S, N*H), nil)
			in[2] = g.param("v", i64s(B, S, N*H), nil)
			if c.bias {
				in[3] = g.param("bias", i64s(3*N*H), nil)
			}
			total := int64(S)
			if c.past {
				in[6] = g.param("past_key", i64s(B, N, P, H), nil)
				in[7] = g.param("past_value", i64s(B, N, P, H), nil)
				total += P
			}
			if c.mask != nil {
				in[4] = c.mask(g, total)
			}
			for len(in) > 0 && in[len(in)-1] == "" {
				in = in[:len(in)-1]
			}
			attrs := []*onnxpb.AttributeProto{graph.AttrInt("num_heads", N)}
			if c.uni {
				attrs = append(attrs, graph.AttrInt("unidirectional", 1))
			}
			nout := 1
			if c.past {
				nout = 3
			}
			outs := g.nodeN("com.microsoft", "MultiHeadAttention", in, nout, attrs...)
			all := func(int) bool { return true }
			loss := g.maskedLoss(outs[0], i64s(B, S, N*H), all)
			if c.past {
				loss = g.node("Add", []string{loss, g.maskedLoss(outs[1], i64s(B, N, total, H), all)})
			}
			g.checkLoss(loss)
			g.checkForward(loss, outs[0], i64s(B, S, N*H), all, 1e-5)
		})
	}
}

// TestMultiHeadAttentionPacked checks the packed layouts, which ONNX
// Runtime's CPU kernel does not run ("not implemented for CPU"), against
// the unpacked op: the same q, k and v, packed by standard ops into
// [B, S, N, 3, H] (or k and v into [B, S, N, 2, H]), give the loss and
// gradients that the unpacked MultiHeadAttention gives, whose
// decomposition TestMultiHeadAttention holds to the kernel.
func TestMultiHeadAttentionPacked(t *testing.T) {
	requireORT(t)
	const B, S, N, H = 2, 3, 2, 4
	for _, c := range []struct {
		name      string
		qkv, bias bool
		mask      bool
	}{
		{name: "qkv", qkv: true},
		{name: "qkv_bias_mask", qkv: true, bias: true, mask: true},
		{name: "kv_bias", bias: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			build := func(packed bool) (*testGraph, string) {
				g := newTestGraph(t, 17, dtype.Float32, declStatic)
				q := g.param("q", i64s(B, S, N*H), nil)
				k := g.param("k", i64s(B, S, N*H), nil)
				v := g.param("v", i64s(B, S, N*H), nil)
				in := make([]string, 5)
				if c.bias {
					in[3] = g.param("bias", i64s(3*N*H), nil)
				}
				if c.mask {
					in[4] = g.int32s(i64s(B, S), 1, 1, 0, 1, 0, 1)
				}
				// slot makes x [B, S, N·H] a slot [B, S, N, 1, H] of a packed tensor.
				slot := func(x string) string {
					return g.node("Unsqueeze", []string{g.node("Reshape", []string{x, g.ints(i64s(4), B, S, N, H)}), g.ints(i64s(1), 3)})
				}
				switch {
				case !packed:
					in[0], in[1], in[2] = q, k, v
				case c.qkv:
					in[0] = g.node("Concat", []string{slot(q), slot(k), slot(v)}, graph.AttrInt("axis", 3))
				default:
					in[0], in[1] = q, g.node("Concat", []string{slot(k), slot(v)}, graph.AttrInt("axis", 3))
				}
				for len(in) > 0 && in[len(in)-1] == "" {
					in = in[:len(in)-1]
				}
				y := g.nodeN("com.microsoft", "MultiHeadAttention", in, 1, graph.AttrInt("num_heads", N))[0]
				return g, g.maskedLoss(y, i64s(B, S, N*H), func(int) bool { return true })
			}
			ga, la := build(true)
			gb, lb := build(false)
			sameGradients(t, ga, la, gb, lb)
		})
	}
}

// sameGradients builds the gradients of loss la in graph a and of lb in
// b, graphs with the same params fed the same values, and fails where the
// losses or any gradient differ: for a fused op that ONNX Runtime's CPU
// does not run, against its standard-op twin.
func sameGradients(t *testing.T, a *testGraph, la string, b *testGraph, lb string) {
	t.Helper()
	run := func(g *testGraph, loss string) map[string][]float64 {
		tm, err := Build(g.m, loss, g.params)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		outs := []string{loss}
		for _, p := range g.params {
			outs = append(outs, GradName(p))
		}
		res, err := g.session(tm).Run(g.tensors("", 0, 0), outs)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]float64{}
		for name, v := range res {
			got[name] = v.ToFloat64()
		}
		return got
	}
	x, y := run(a, la), run(b, lb)
	if math.Abs(x[la][0]-y[lb][0]) > 1e-5*(1+math.Abs(y[lb][0])) {
		t.Errorf("loss: %g, twin %g", x[la][0], y[lb][0])
	}
	for _, p := range a.params {
		gx, gy := x[GradName(p)], y[GradName(p)]
		if len(gx) != len(gy) {
			t.Errorf("%s: %d gradient values, twin %d", p, len(gx), len(gy))
			continue
		}
		for i := range gx {
			if math.Abs(gx[i]-gy[i]) > 1e-5*(1+math.Abs(gy[i])) {
				t.Errorf("%s[%d]: gradient %g, twin %g", p, i, gx[i], gy[i])
				break
			}
		}
	}
}
