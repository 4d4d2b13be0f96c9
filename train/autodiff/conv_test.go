package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TestConv checks Conv's gradients for input, weight and bias against
// finite differences, over Conv1d and Conv2d geometries: strides that
// leave input rows unread, pads, dilations, auto_pad, a 1×1 kernel (B of
// a LoRA branch) and a grouped convolution (input and bias only).
// ONNX Runtime's CPU Conv is float32 only, so the check runs in float32.
func TestConv(t *testing.T) {
	requireORT(t)
	cases := []struct {
		name   string
		x, w   []int64
		attrs  []*onnxpb.AttributeProto
		group  int64
		weight bool // differentiate the weight
	}{
		{"1d", i64s(2, 3, 7), i64s(4, 3, 3), nil, 1, true},
		{"1d_stride2_pad", i64s(2, 3, 8), i64s(4, 3, 3), []*onnxpb.AttributeProto{graph.AttrInts("strides", 2), graph.AttrInts("pads", 1, 0)}, 1, true},
		{"2d_pad_dilation", i64s(1, 2, 6, 5), i64s(3, 2, 3, 2), []*onnxpb.AttributeProto{graph.AttrInts("pads", 1, 0, 2, 1), graph.AttrInts("dilations", 1, 2)}, 1, true},
		{"2d_stride", i64s(2, 2, 7, 6), i64s(3, 2, 3, 3), []*onnxpb.AttributeProto{graph.AttrInts("strides", 2, 3), graph.AttrInts("pads", 1, 1, 1, 1)}, 1, true},
		{"2d_same_upper", i64s(1, 2, 5, 5), i64s(2, 2, 3, 3), []*onnxpb.AttributeProto{graph.AttrString("auto_pad", "SAME_UPPER"), graph.AttrInts("strides", 2, 2)}, 1, true},
		{"2d_1x1", i64s(2, 3, 4, 4), i64s(5, 3, 1, 1), nil, 1, true},
		{"2d_grouped", i64s(1, 4, 5, 5), i64s(4, 2, 3, 3), []*onnxpb.AttributeProto{graph.AttrInts("pads", 1, 1, 1, 1)}, 2, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGraph(t, 17, dtype.Float32, declStatic)
			x := g.param("x", c.x, nil)
			var w string
			if c.weight {
				w = g.param("w", c.w, nil)
			} else {
				w = g.randFloats(c.w, nil)
			}
			b := g.param("b", c.w[:1], nil)
			attrs := append([]*onnxpb.AttributeProto{graph.AttrInt("group", c.group)}, c.attrs...)
			g.check(g.node("Conv", []string{x, w, b}, attrs...))
		})
	}
}
