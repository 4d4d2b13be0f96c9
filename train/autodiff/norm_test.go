package autodiff

import (
	"fmt"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestSoftmax(t *testing.T) {
	requireORT(t)
	for _, op := range []string{"Softmax", "LogSoftmax"} {
		for _, axis := range []int64{-1, 1, 0} {
			t.Run(fmt.Sprintf("%s/axis%d", op, axis), func(t *testing.T) {
				// Opset 11 coerces to 2-D at axis: axis 1 of a 3-D input
				// normalizes over the last two dims together.
				forModes(t, []int64{11, 13}, allModes, func(t *testing.T, opset int64, mode declMode) {
					g := newTestGraph(t, opset, dtype.Float64, mode)
					x := g.param("x", i64s(2, 3, 4), uniform(-2, 2))
					g.check(g.node(op, []string{x}, graph.AttrInt("axis", axis)))
				})
			})
		}
		t.Run(op+"/default_axis", func(t *testing.T) {
			forModes(t, []int64{11, 13}, []declMode{declStatic}, func(t *testing.T, opset int64, mode declMode) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				x := g.param("x", i64s(2, 3, 4), uniform(-2, 2))
				g.check(g.node(op, []string{x}))
			})
		})
	}
}

func TestLayerNormalization(t *testing.T) {
	requireORT(t)
	for _, axis := range []int64{-1, 1} {
		for _, withBias := range []bool{true, false} {
			name := fmt.Sprintf("axis%d", axis)
			if withBias {
				name += "_bias"
			}
			t.Run(name, func(t *testing.T) {
				modes := allModes
				if axis >= 0 {
					// A positive axis needs the rank (see normAxes).
					modes = modes[:2]
				}
				forModes(t, []int64{17}, modes, func(t *testing.T, opset int64, mode declMode) {
					g := newTestGraph(t, opset, dtype.Float64, mode)
					x := g.param("x", i64s(2, 3, 4), uniform(-2, 2))
					sd := i64s(4)
					if axis == 1 {
						sd = i64s(3, 4)
					}
					in := []string{x, g.param("scale", sd, uniform(0.5, 1.5))}
					if withBias {
						in = append(in, g.param("bias", sd, nil))
					}
					attrs := []*onnxpb.AttributeProto{graph.AttrInt("axis", axis), graph.AttrFloat("epsilon", 1e-3)}
					y := g.nodeN("", "LayerNormalization", in, 1, attrs...)[0]
					g.check(y)
				})
			})
		}
	}
}

func TestSimplifiedLayerNormalization(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{14, 17}, allModes, func(t *testing.T, opset int64, mode declMode) {
		g := newTestGraph(t, opset, dtype.Float64, mode)
		x := g.param("x", i64s(2, 3, 4), uniform(-2, 2))
		scale := g.param("scale", i64s(4), uniform(0.5, 1.5))
		g.check(g.node("SimplifiedLayerNormalization", []string{x, scale}, graph.AttrInt("axis", -1), graph.AttrFloat("epsilon", 1e-3)))
	})
}

func TestSkipLayerNormalization(t *testing.T) {
	requireORT(t)
	for _, op := range []string{"SkipSimplifiedLayerNormalization", "SkipLayerNormalization"} {
		for _, withBias := range []bool{false, true} {
			name := op
			if withBias {
				name += "/bias"
			}
			t.Run(name, func(t *testing.T) {
				// ONNX Runtime's CPU kernels of these ops are float32 (and
				// float16) only.
				forModes(t, []int64{14}, allModes, func(t *testing.T, opset int64, mode declMode) {
					g := newTestGraph(t, opset, dtype.Float32, mode)
					x := g.param("x", i64s(2, 3, 4), uniform(-2, 2))
					skip := g.param("skip", i64s(2, 3, 4), uniform(-2, 2))
					in := []string{x, skip, g.param("gamma", i64s(4), uniform(0.5, 1.5))}
					if op == "SkipLayerNormalization" {
						in = append(in, g.param("beta", i64s(4), nil))
					}
					if withBias {
						in = append(in, g.param("bias", i64s(4), nil))
					}
					outs := g.nodeN("com.microsoft", op, in, 4, graph.AttrFloat("epsilon", 1e-3))
					outs[1], outs[2] = "", "" // mean and inv_std_var: not asked for
					g.m.Graph().Node[len(g.m.Graph().Node)-1].Output = outs
					// Both the normalized output and the residual sum feed the loss,
					// as in a decoder layer.
					y := g.node("Mul", []string{outs[0], outs[3]})
					g.check(y)
				})
			})
		}
	}
}
