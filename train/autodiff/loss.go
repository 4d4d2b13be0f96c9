package autodiff

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Loss ops (opset 12 and later).

func init() {
	register("", "SoftmaxCrossEntropyLoss", gradClassLoss(true), 0)
	register("", "NegativeLogLikelihoodLoss", gradClassLoss(false), 0)
}

// gradClassLoss differentiates SoftmaxCrossEntropyLoss (softmax true) and
// NegativeLogLikelihoodLoss over inputs [N, C, d1, …] and integer labels
// [N, d1, …]. With wᵢ the weight of element i's label (0 where the label
// is ignore_index) and c the loss's gradient (divided by Σwᵢ for
// reduction "mean"), the gradient of the log-probabilities is
// G = −onehot(label)·wᵢ·c, plus the gradient of the log_prob output if it
// has one. For the cross entropy, scores get G − softmax·ΣG.
func gradClassLoss(softmax bool) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		x, labels := n.Input[0], n.Input[1]
		dt := e.dtype(x)
		reduction := graph.StringAttr(n, "reduction", "mean")
		labels = e.cast(labels, graph.Int64)
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
		var G []string
		if c := dy[0]; c != "" {
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
			oh := e.op("OneHot", []string{labels, e.dimOf(x, 1), e.constant("onehot_values_float", func(name string) *onnxpb.TensorProto {
				return graph.NewFloat32Tensor(name, graph.Float32, []int64{2}, []float32{0, 1})
			})}, graph.AttrInt("axis", 1))
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
		if len(n.Output) < 2 || n.Output[1] == "" {
			// The forward did not keep the log-probabilities: make it.
			logp := e.m.UniqueName(nodeScope(n) + "/log_prob")
			if len(n.Output) < 2 {
				n.Output = append(n.Output, logp)
			} else {
				n.Output[1] = logp
			}
			e.inf.info[logp] = &tinfo{dtype: dt, shape: e.shape(x)}
		}
		p := e.op("Exp", []string{n.Output[1]})
		gx := e.sub(g, e.mul(p, e.reduceSum(g, []int64{1}, true)))
		e.inf.info[gx].shape = e.shape(x)
		return []string{gx}
	}
}
