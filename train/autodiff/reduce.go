package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Reductions. The axes are an attribute before opset 13 (ReduceSum) or
// 18 (the others) and an optional input from then on; both forms are read.
// ArgMax and ArgMin have inference only.

func init() {
	register("", "ReduceSum", entry{grad: gradReduce(false, false), diff: []int{0}, infer: inferReduce})
	register("", "ReduceMean", entry{grad: gradReduce(true, false), diff: []int{0}, infer: inferReduce})
	register("", "ReduceSumSquare", entry{grad: gradReduce(false, true), diff: []int{0}, infer: inferReduce})
	for _, op := range []string{"ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceLogSumExp"} {
		register("", op, entry{infer: inferReduce})
	}
	register("", "ArgMax", entry{infer: inferArg})
	register("", "ArgMin", entry{infer: inferArg})
}

// inferArg: the index of the largest (smallest) element along axis.
func inferArg(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	s := f.reduceShape(f.in(n, 0).shape, []int64{graph.IntAttr(n, "axis", 0)}, true, graph.IntAttr(n, "keepdims", 1) != 0, false)
	return one(&tinfo{elem: dtype.Int64, shape: s})
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
			e.inf.setShape(gx, e.shape(x))
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

// reduceAxes returns the axes of a Reduce* node: from the attribute, or
// from the second input (opset 13 for ReduceSum, 18 for the others).
// ok is false when they are given by a value that is not constant.
func (f *inferer) reduceAxes(n *onnxpb.NodeProto) (axes []int64, ok bool) {
	if a := graph.Attr(n, "axes"); a != nil {
		return a.Ints, true
	}
	if len(n.Input) > 1 && n.Input[1] != "" {
		return f.constInts(n, 1)
	}
	return nil, true
}

// inferReduce: the input with the reduced axes dropped, or kept as 1.
func inferReduce(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	axes, ok := f.reduceAxes(n)
	keep := graph.IntAttr(n, "keepdims", 1) != 0
	noop := graph.IntAttr(n, "noop_with_empty_axes", 0) != 0
	s := unknownShape()
	if ok {
		s = f.reduceShape(x.shape, axes, len(axes) > 0, keep, noop)
	}
	return one(&tinfo{elem: x.elem, shape: s})
}

// reduceShape is s reduced over axes (every axis when none are given,
// unless noop), with the reduced axes kept as 1 or dropped.
func (f *inferer) reduceShape(s shape, axes []int64, given, keep, noop bool) shape {
	if !s.ok {
		return s
	}
	if !given && noop {
		return s
	}
	red := map[int]bool{}
	for i := range s.dims {
		red[i] = !given
	}
	for _, a := range axes {
		red[normAxis(a, s.rank())] = true
	}
	out := rankShape()
	for i, d := range s.dims {
		switch {
		case !red[i]:
			out.dims = append(out.dims, d)
		case keep:
			out.dims = append(out.dims, known(1))
		}
	}
	return out
}
