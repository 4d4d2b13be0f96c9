package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Loss ops (opset 12 and later).

func init() {
	register("", "SoftmaxCrossEntropyLoss", entry{grad: gradClassLoss(true), diff: []int{0}, infer: inferClassLoss})
	register("", "NegativeLogLikelihoodLoss", entry{grad: gradClassLoss(false), diff: []int{0}, infer: inferClassLoss})
}

// inferClassLoss: a scalar loss (the labels' shape with reduction "none"),
// and the log-probabilities of the scores' shape.
func inferClassLoss(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	x := f.in(n, 0)
	s := rankShape()
	if graph.StringAttr(n, "reduction", "mean") == "none" {
		s = f.in(n, 1).shape
	}
	return []*tinfo{{elem: x.elem, shape: s}, {elem: x.elem, shape: x.shape}}
}

// gradClassLoss differentiates SoftmaxCrossEntropyLoss (softmax true) and
// NegativeLogLikelihoodLoss over inputs [N, C, d1, …] and integer labels
// [N, d1, …]. With wᵢ the weight of element i's label (0 where the label
// is ignore_index) and c the loss's gradient (divided by Σwᵢ for
// reduction "mean"), the gradient of the log-probabilities is
// G = −onehot(label)·wᵢ·c, plus the gradient of the log_prob output if it
// has one. For the cross entropy, scores get G − softmax·ΣG, which is
// softmax·c − onehot·c when log_prob has no gradient of its own: that case,
// a language model's loss, is emitted without full-size temporaries beyond
// softmax·c (fusedCrossEntropyGrad).
func gradClassLoss(softmax bool) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		x, labels := n.Input[0], n.Input[1]
		dt := e.typeOf(x)
		reduction := graph.StringAttr(n, "reduction", "mean")
		labels = e.cast(labels, dtype.Int64)
		var w string // per-element weight; "" means 1
		if a := graph.Attr(n, "ignore_index"); a != nil {
			keep := e.op("Not", []string{e.op("Equal", []string{labels, e.int0(a.I)})})
			labels = e.op("Where", []string{keep, labels, e.int0(0)})
			w = e.cast(keep, dt)
		}
		if weights := inputOr(n, 2); weights != "" {
			wl := e.op("Gather", []string{weights, labels}, graph.AttrInt("axis", 0))
			if w == "" {
				w = wl
			} else {
				w = e.mul(w, wl)
			}
		}
		var c string // the gradient of each element's −log p(label), broadcast over the classes
		if c = dy[0]; c != "" {
			if reduction == "mean" {
				if w == "" {
					c = e.div(c, e.cast(e.op("Size", []string{labels}), dt))
				} else {
					c = e.div(c, e.op("ReduceSum", []string{w}, graph.AttrInt("keepdims", 0)))
				}
			}
			if w != "" {
				c = e.mul(c, w)
			}
			if reduction == "none" || w != "" {
				c = e.unsqueeze(c, 1)
			}
		}
		if softmax && c != "" && (len(dy) < 2 || dy[1] == "") {
			return []string{fusedCrossEntropyGrad(e, n, x, labels, c)}
		}
		var G []string
		if c != "" {
			oh := e.op("OneHot", []string{labels, e.dimOf(x, 1), e.oneHotValues()}, graph.AttrInt("axis", 1))
			G = append(G, e.neg(e.mul(e.cast(oh, dt), c)))
		}
		if softmax && len(dy) > 1 && dy[1] != "" {
			G = append(G, dy[1])
		}
		if len(G) == 0 {
			return nil
		}
		g := e.sum(G)
		if !softmax {
			return []string{g}
		}
		p := e.op("Exp", []string{logProbOf(e, n, x)})
		gx := e.sub(g, e.mul(p, e.reduceSum(g, []int64{1}, true)))
		e.inf.setShape(gx, e.shape(x))
		return []string{gx}
	}
}

// fusedCrossEntropyGrad is the gradient of SoftmaxCrossEntropyLoss's
// scores when only the loss output is differentiated: softmax·c − onehot·c,
// with c the per-element coefficient (scalar or [N, 1, d1, …]). It is made
// as softmax·c, with c taken off at each label by a GatherElements and a
// ScatterElements over the labels alone, so that no one-hot tensor and no
// second full-size difference is ever made: for a language model's loss,
// where the scores are [batch·sequence, vocabulary], each full-size tensor
// is hundreds of megabytes.
func fusedCrossEntropyGrad(e *emitter, n *onnxpb.NodeProto, x, labels, c string) string {
	q := e.mul(e.op("Exp", []string{logProbOf(e, n, x)}), c)
	at := e.unsqueeze(labels, 1)
	picked := e.op("GatherElements", []string{q, at}, graph.AttrInt("axis", 1))
	gx := e.op("ScatterElements", []string{q, at, e.sub(picked, c)}, graph.AttrInt("axis", 1))
	e.inf.record(gx, tinfo{elem: e.typeOf(x), shape: e.shape(x)})
	return gx
}

// logProbOf returns the log_prob output of the SoftmaxCrossEntropyLoss
// node n over scores x, adding that output to the node when the forward
// did not keep it.
func logProbOf(e *emitter, n *onnxpb.NodeProto, x string) string {
	return e.keepOutput(n, 1, "log_prob", tinfo{elem: e.typeOf(x), shape: e.shape(x)})
}
