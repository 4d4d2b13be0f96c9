package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Reductions. The axes are an attribute before opset 13 (ReduceSum) or
// 18 (the others) and an optional input from then on; both forms are read.

func init() {
	register("", "ReduceSum", gradReduce(false, false), 0)
	register("", "ReduceMean", gradReduce(true, false), 0)
	register("", "ReduceSumSquare", gradReduce(false, true), 0)
}

// gradReduce spreads the gradient of each reduced element back over the
// elements it reduced: dX = expand(dY), divided by their count for a mean
// and times 2X for a sum of squares.
func gradReduce(mean, square bool) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		x, y, g := n.Input[0], n.Output[0], dy[0]
		dt := e.typeOf(x)
		keep := graph.IntAttr(n, "keepdims", 1) != 0
		noop := graph.IntAttr(n, "noop_with_empty_axes", 0) != 0
		axes, static := e.inf.reduceAxes(n)
		gx := g
		if !static || len(axes) > 0 || !noop {
			if mean {
				g = e.div(g, reduceCount(e, x, y, dt))
			}
			if !keep {
				switch {
				case !static:
					g = e.op("Unsqueeze", []string{g, n.Input[1]})
				case len(axes) > 0:
					g = e.unsqueeze(g, axes...)
				}
				// With every axis reduced, g is a scalar and Expand alone
				// restores the shape.
			}
			gx = e.op("Expand", []string{g, e.shapeOf(x)})
			e.inf.info[gx].shape = e.shape(x)
		}
		if square {
			gx = e.mul(gx, e.mul(x, e.scalar(2, dt)))
		}
		return []string{gx}
	}
}

// reduceCount returns, as a scalar of type dt, how many elements of x
// went into each element of y.
func reduceCount(e *emitter, x, y string, dt dtype.Type) string {
	nx, ny := e.shape(x).numel(), e.shape(y).numel()
	if nx >= 0 && ny > 0 {
		return e.scalar(float64(nx/ny), dt)
	}
	sx := e.sizeOf(x)
	sy := e.sizeOf(y)
	return e.cast(e.div(sx, sy), dt)
}
