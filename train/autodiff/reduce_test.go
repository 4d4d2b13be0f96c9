package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestReduce(t *testing.T) {
	requireORT(t)
	cases := []struct {
		name string
		axes []int64 // nil: all axes
		keep int64
	}{
		{"last_keep", i64s(-1), 1},
		{"last_drop", i64s(-1), 0},
		{"two_keep", i64s(0, 2), 1},
		{"two_drop", i64s(2, 0), 0},
		{"all_keep", nil, 1},
		{"all_drop", nil, 0},
	}
	for _, op := range []string{"ReduceSum", "ReduceMean", "ReduceSumSquare"} {
		for _, c := range cases {
			t.Run(op+"/"+c.name, func(t *testing.T) {
				forModes(t, []int64{11, 13, 18}, allModes, func(t *testing.T, opset int64, mode declMode) {
					g := newTestGraph(t, opset, dtype.Float64, mode)
					x := g.param("x", i64s(2, 3, 4), nil)
					in := []string{x}
					attrs := []*onnxpb.AttributeProto{graph.AttrInt("keepdims", c.keep)}
					inputAxes := opset >= 18 || (op == "ReduceSum" && opset >= 13)
					if c.axes != nil {
						if inputAxes {
							in = append(in, g.ints(i64s(int64(len(c.axes))), c.axes...))
						} else {
							attrs = append(attrs, graph.AttrInts("axes", c.axes...))
						}
					}
					g.check(g.node(op, in, attrs...))
				})
			})
		}
	}
}

// TestReduceComputedAxes feeds ReduceSum its axes from a graph input, so
// that the rule cannot read them.
func TestReduceComputedAxes(t *testing.T) {
	requireORT(t)
	for _, keep := range []int64{0, 1} {
		g := newTestGraph(t, 13, dtype.Float64, declStatic)
		x := g.param("x", i64s(2, 3, 4), nil)
		axes := g.intInput("axes", i64s(2), i64s(0, -1))
		g.check(g.node("ReduceSum", []string{x, axes}, graph.AttrInt("keepdims", keep)))
	}
}
