package autodiff

import (
	"fmt"
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// ropeCaches adds cos and sin caches [maxPos, half] as initializers.
func ropeCaches(g *testGraph, maxPos, half int) (cos, sin string) {
	var c, s []float64
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			theta := float64(p) / math.Pow(10000, float64(2*i)/float64(2*half))
			c = append(c, math.Cos(theta))
			s = append(s, math.Sin(theta))
		}
	}
	return g.floats(i64s(int64(maxPos), int64(half)), c...), g.floats(i64s(int64(maxPos), int64(half)), s...)
}

func TestRotaryEmbedding(t *testing.T) {
	requireORT(t)
	cases := []struct {
		name              string
		x                 []int64
		heads, rotary     int64
		half, interleaved int
	}{
		{name: "3d", x: i64s(2, 3, 8), half: 4},
		{name: "3d_interleaved", x: i64s(2, 3, 8), half: 4, interleaved: 1},
		{name: "4d", x: i64s(2, 2, 3, 4), half: 2},
		{name: "3d_two_heads", x: i64s(1, 3, 8), heads: 2, rotary: 4, half: 2},
		{name: "partial", x: i64s(1, 3, 8), heads: 1, rotary: 4, half: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forModes(t, []int64{14}, []declMode{declStatic, declSymbolic}, func(t *testing.T, opset int64, mode declMode) {
				// ONNX Runtime's CPU RotaryEmbedding is float32 (and float16) only.
				g := newTestGraph(t, opset, dtype.Float32, mode)
				x := g.param("x", c.x, nil)
				seq := c.x[len(c.x)-2]
				batch := c.x[0]
				var pos []int64
				for b := int64(0); b < batch; b++ {
					for s := int64(0); s < seq; s++ {
						pos = append(pos, 2*s+b)
					}
				}
				ids := g.intInput("position_ids", i64s(batch, seq), pos)
				cos, sin := ropeCaches(g, 16, c.half)
				attrs := []*onnxpb.AttributeProto{graph.AttrInt("interleaved", int64(c.interleaved))}
				if c.heads > 0 {
					attrs = append(attrs, graph.AttrInt("num_heads", c.heads), graph.AttrInt("rotary_embedding_dim", c.rotary))
				}
				g.check(g.nodeN("com.microsoft", "RotaryEmbedding", []string{x, ids, cos, sin}, 1, attrs...)[0])
			})
		})
	}
}

func TestMultiHeadAttention(t *testing.T) {
	requireORT(t)
	const B, S, P, H, D = 2, 3, 2, 2, 4
	T := int64(S + P)
	cases := []struct {
		name                 string
		past, bias, ab, mask bool
		scale                float32
	}{
		{name: "plain"},
		{name: "past_and_attention_bias", past: true, ab: true, scale: 0.25},
		{name: "projection_bias", bias: true},
		{name: "key_padding_mask", mask: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forModes(t, []int64{14}, []declMode{declStatic, declSymbolic}, func(t *testing.T, opset int64, mode declMode) {
				// ONNX Runtime's CPU MultiHeadAttention is float32 only.
				g := newTestGraph(t, opset, dtype.Float32, mode)
				in := make([]string, 8)
				in[0] = g.param("q", i64s(B, S, H*D), nil)
				in[1] = g.param("k", i64s(B, S, H*D), nil)
				in[2] = g.param("v", i64s(B, S, H*D), nil)
				total := int64(S)
				if c.past {
					in[6] = g.param("past_key", i64s(B, H, P, D), nil)
					in[7] = g.param("past_value", i64s(B, H, P, D), nil)
					total = T
				}
				if c.bias {
					in[3] = g.param("bias", i64s(3*H*D), nil)
				}
				if c.mask {
					g.n++
					name := fmt.Sprintf("mask_%d", g.n)
					g.m.AddInitializer(&onnxpb.TensorProto{Name: name, DataType: int32(dtype.Int32), Dims: i64s(B, total), Int32Data: []int32{1, 1, 0, 1, 0, 1}})
					in[4] = name
				}
				if c.ab {
					in[5] = g.randFloats(i64s(1, H, S, total), uniform(-1, 0))
				}
				for len(in) > 0 && in[len(in)-1] == "" {
					in = in[:len(in)-1]
				}
				attrs := []*onnxpb.AttributeProto{graph.AttrInt("num_heads", H)}
				if c.scale != 0 {
					attrs = append(attrs, graph.AttrFloat("scale", c.scale))
				}
				nout := 1
				if c.past {
					nout = 3
				}
				outs := g.nodeN("com.microsoft", "MultiHeadAttention", in, nout, attrs...)
				y := outs[0]
				if c.past {
					// present_key feeds the loss too, as it would a next step.
					pk := g.node("Reshape", []string{outs[1], g.ints(i64s(3), B, -1, H*D)})
					y = g.node("Concat", []string{y, pk}, graph.AttrInt("axis", 1))
				}
				tm := g.check(y)
				for _, n := range tm.Graph().Node {
					if n.OpType == "MultiHeadAttention" {
						// The forward keeps no fused node on a gradient path.
						t.Errorf("training graph still has MultiHeadAttention node %q", n.Name)
					}
				}
			})
		})
	}
}

// TestRotaryEmbeddingOpset23 checks the default-domain op of opset 23,
// whose inputs come in another order (X, cos, sin, position_ids).
func TestRotaryEmbeddingOpset23(t *testing.T) {
	requireORT(t)
	for _, interleaved := range []int64{0, 1} {
		g := newTestGraph(t, 23, dtype.Float32, declStatic)
		x := g.param("x", i64s(2, 2, 3, 4), nil) // [B, H, S, D]
		ids := g.intInput("position_ids", i64s(2, 3), i64s(0, 1, 2, 3, 5, 7))
		cos, sin := ropeCaches(g, 8, 2)
		g.check(g.node("RotaryEmbedding", []string{x, cos, sin, ids}, graph.AttrInt("interleaved", interleaved)))
	}
}
