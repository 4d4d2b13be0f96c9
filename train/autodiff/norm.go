package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Softmax, LogSoftmax and the layer normalizations.

func init() {
	register("", "Softmax", entry{grad: gradSoftmax(false), diff: []int{0}, infer: inferSame, recompute: true})
	register("", "LogSoftmax", entry{grad: gradSoftmax(true), diff: []int{0}, infer: inferSame})
	register("", "LayerNormalization", entry{grad: gradNorm(true), diff: []int{0, 1, 2}, infer: inferNorm})
	register("", "SimplifiedLayerNormalization", entry{grad: gradNorm(false), diff: []int{0, 1}, infer: inferNorm})
	register("com.microsoft", "SkipSimplifiedLayerNormalization", entry{grad: gradSkipNorm(false), diff: []int{0, 1, 2, 3}, infer: inferSkipNorm})
	register("com.microsoft", "SkipLayerNormalization", entry{grad: gradSkipNorm(true), diff: []int{0, 1, 2, 3, 4}, infer: inferSkipNorm})
}

// inferNorm: the normalized input, then the float32 mean and inverse
// standard deviation (statShape).
func inferNorm(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	outs := []*tinfo{{elem: x.elem, shape: x.shape}}
	for range n.Output[min(1, len(n.Output)):] {
		outs = append(outs, &tinfo{elem: dtype.Float32, shape: f.statShape(n, x.shape)})
	}
	return outs
}

// inferSkipNorm: the normalized sum, the float32 mean and inverse
// standard deviation, and the sum input + skip (+ bias) itself.
func inferSkipNorm(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	outs := []*tinfo{{elem: x.elem, shape: x.shape}}
	for i := range n.Output[min(1, len(n.Output)):] {
		if i == 2 {
			outs = append(outs, &tinfo{elem: x.elem, shape: x.shape})
		} else {
			outs = append(outs, &tinfo{elem: dtype.Float32, shape: f.statShape(n, x.shape)})
		}
	}
	return outs
}

// gradSoftmax: for y = softmax(x), dx = y·(dy − Σ dy·y); for
// y = logsoftmax(x), dx = dy − exp(y)·Σ dy. The sums run over the softmax
// axis. Before opset 13 the op flattens the input to 2-D at axis and
// normalizes each row; the rule then works on that 2-D view, unless the
// axis is the last one, where both readings agree.
func gradSoftmax(logSoftmax bool) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		x, y, g := n.Input[0], n.Output[0], dy[0]
		r := e.shape(x).rank()
		var axis int64 = -1
		if e.opset < 13 {
			axis = graph.IntAttr(n, "axis", 1)
		} else {
			axis = graph.IntAttr(n, "axis", -1)
		}
		coerce := e.opset < 13 && !(axis == -1 || (r >= 0 && normAxis(axis, r) == r-1))
		if coerce {
			// Reshape rather than Flatten: ONNX Runtime's shape inference
			// mishandles Flatten at axis 0 of some inputs.
			if axis < 0 && r >= 0 {
				axis += int64(r)
			}
			rows := e.concatInts(e.prodDims(x, 0, axis), e.ints(-1))
			y = e.op("Reshape", []string{y, rows})
			g = e.op("Reshape", []string{g, rows})
			axis = 1
		}
		var gx string
		if logSoftmax {
			s := e.reduceSum(g, []int64{axis}, true)
			gx = e.sub(g, e.mul(e.op("Exp", []string{y}), s))
		} else {
			s := e.reduceSum(e.mul(g, y), []int64{axis}, true)
			gx = e.mul(y, e.sub(g, s))
		}
		if coerce {
			gx = e.op("Reshape", []string{gx, e.shapeOf(x)})
			e.inf.setShape(gx, e.shape(x))
		}
		return []string{gx}
	}
}

// normAxes returns the axes [axis, rank) that a normalization with
// attribute axis reduces over, as negative axes when possible so that the
// rank need not be known.
func normAxes(e *emitter, x string, axis int64) []int64 {
	if axis < 0 {
		var axes []int64
		for a := axis; a < 0; a++ {
			axes = append(axes, a)
		}
		return axes
	}
	r := e.shape(x).rank()
	if r < 0 {
		e.fail("the rank of %q must be known", x)
		return []int64{-1}
	}
	var axes []int64
	for a := axis; a < int64(r); a++ {
		axes = append(axes, a)
	}
	return axes
}

// normBack differentiates xhat·scale with respect to x, where
// xhat = (x − mean)·rstd (centered) or x·rstd (RMS), both over axes. It
// recomputes the statistics from x in x's element type, and returns dx and
// dy·xhat (the scale's gradient before it is summed to the scale's shape).
func normBack(e *emitter, x, scale, g string, axes []int64, eps float64, centered bool) (gx, gxhat string) {
	dt := e.typeOf(x)
	d := x
	if centered {
		d = e.sub(x, e.reduceMean(x, axes, true))
	}
	variance := e.reduceMean(e.mul(d, d), axes, true)
	rstd := e.op("Reciprocal", []string{e.op("Sqrt", []string{e.add(variance, e.scalar(eps, dt))})})
	xhat := e.mul(d, rstd)
	gh := g
	if scale != "" {
		gh = e.mul(g, scale)
	}
	// dx = rstd·(gh − mean(gh) − xhat·mean(gh·xhat)), without mean(gh) for RMS.
	inner := e.sub(gh, e.mul(xhat, e.reduceMean(e.mul(gh, xhat), axes, true)))
	if centered {
		inner = e.sub(inner, e.reduceMean(gh, axes, true))
	}
	gx = e.mul(rstd, inner)
	e.inf.setShape(gx, e.shape(x))
	return gx, e.mul(g, xhat)
}

func inputOr(n *onnxpb.NodeProto, i int) string {
	if i < len(n.Input) {
		return n.Input[i]
	}
	return ""
}

// gradNorm: LayerNormalization (centered; opset 17, and before that ONNX
// Runtime's own op of the same name and inputs) y = xhat·scale + B over the
// axes from axis on, and RMS normalization y = x·rstd·scale, ONNX
// Runtime's SimplifiedLayerNormalization (in the default domain).
func gradNorm(centered bool) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		x, scale, g := n.Input[0], n.Input[1], dy[0]
		if g == "" {
			return nil
		}
		axes := normAxes(e, x, graph.IntAttr(n, "axis", -1))
		eps := float64(graph.FloatAttr(n, "epsilon", 1e-5))
		gx, gscale := normBack(e, x, scale, g, axes, eps, centered)
		out := make([]string, 2)
		if centered {
			out = make([]string, len(n.Input))
		}
		if need[0] {
			out[0] = gx
		}
		if need[1] {
			out[1] = e.unbroadcast(gscale, scale)
		}
		if centered && len(need) > 2 && need[2] {
			out[2] = e.unbroadcast(g, n.Input[2])
		}
		return out
	}
}

// gradSkipNorm: com.microsoft SkipSimplifiedLayerNormalization (inputs
// input, skip, gamma, bias) and SkipLayerNormalization (input, skip,
// gamma, beta, bias). s = input + skip (+ bias) is normalized over the last
// axis; output 3 is s itself, and its gradient joins the one that flows
// back through the normalization.
func gradSkipNorm(centered bool) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		in, skip, gamma := n.Input[0], n.Input[1], n.Input[2]
		biasIdx := 3
		if centered {
			biasIdx = 4
		}
		bias := inputOr(n, biasIdx)
		s := ""
		if len(n.Output) > 3 && n.Output[3] != "" {
			s = n.Output[3]
		} else {
			s = e.add(in, skip)
			if bias != "" {
				s = e.add(s, bias)
			}
			e.inf.setShape(s, e.shape(in))
		}
		eps := float64(graph.FloatAttr(n, "epsilon", 1e-5))
		out := make([]string, len(n.Input))
		var gs []string
		if g := dy[0]; g != "" {
			gx, ggamma := normBack(e, s, gamma, g, []int64{-1}, eps, centered)
			gs = append(gs, gx)
			if need[2] {
				out[2] = e.unbroadcast(ggamma, gamma)
			}
			if centered && len(need) > 3 && need[3] {
				out[3] = e.unbroadcast(g, n.Input[3])
			}
		}
		if len(dy) > 3 && dy[3] != "" {
			gs = append(gs, dy[3])
		}
		if len(gs) == 0 {
			return out
		}
		gsum := e.sum(gs)
		e.inf.setShape(gsum, e.shape(in))
		if need[0] {
			out[0] = e.unbroadcast(gsum, in)
		}
		if need[1] {
			out[1] = e.unbroadcast(gsum, skip)
		}
		if bias != "" && len(need) > biasIdx && need[biasIdx] {
			out[biasIdx] = e.unbroadcast(gsum, bias)
		}
		return out
	}
}

// statShape is the shape of a normalization's mean or inverse std output:
// the input's, with the normalized axes set to 1.
func (f *inferer) statShape(n *onnxpb.NodeProto, s shape) shape {
	if !s.ok {
		return s
	}
	a := normAxis(graph.IntAttr(n, "axis", -1), s.rank())
	dims := append([]dim(nil), s.dims...)
	for i := a; i < len(dims); i++ {
		dims[i] = known(1)
	}
	return rankShape(dims...)
}
