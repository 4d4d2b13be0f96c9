package autodiff

import (
	"math"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// GELU and its fused forms. An Erf-based GELU written out in standard ops
// needs no rule of its own: Erf, Mul and Add have theirs. The other
// activations of the default domain have inference only.

const (
	geluK = 0.7978845608028654 // √(2/π)
	geluC = 0.044715
)

func init() {
	register("com.microsoft", "Gelu", entry{grad: gradGelu(false, false), infer: inferSame})
	register("", "Gelu", entry{grad: gradGelu(false, true), infer: inferSame}) // opset 20, with approximate="none"|"tanh"
	register("com.microsoft", "FastGelu", entry{grad: gradGelu(true, false), infer: inferSame})
	register("com.microsoft", "BiasGelu", entry{grad: gradGelu(false, false), infer: inferSame})
	register("com.microsoft", "QuickGelu", entry{grad: gradQuickGelu, infer: inferSame})
	for _, op := range []string{"Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Mish", "Softsign", "Shrink", "ThresholdedRelu"} {
		register("", op, entry{infer: inferSame})
	}
}

// gradGelu differentiates GELU of u = x (+ bias, for FastGelu and
// BiasGelu):
//
//	exact: y = u·Φ(u),                   dy/du = Φ(u) + u·φ(u)
//	tanh:  y = ½u(1 + t), t = tanh(k(u + c·u³)),
//	       dy/du = ½(1 + t) + ½u(1 − t²)·k(1 + 3c·u²)
//
// The bias, when there is one, gets dy/du summed to its shape.
func gradGelu(tanhApprox, readApproxAttr bool) gradFunc {
	return func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
		x, g := n.Input[0], dy[0]
		dt := e.typeOf(x)
		approx := tanhApprox
		if readApproxAttr {
			approx = graph.StringAttr(n, "approximate", "none") == "tanh"
		}
		c := func(v float64) string { return e.scalar(v, dt) }
		u := x
		if b := inputOr(n, 1); b != "" {
			u = e.add(x, b)
			e.inf.setShape(u, e.shape(n.Output[0]))
		}
		var d string
		if approx {
			u2 := e.mul(u, u)
			inner := e.mul(e.mul(u, e.add(c(1), e.mul(u2, c(geluC)))), c(geluK))
			t := e.op("Tanh", []string{inner})
			half1 := e.mul(c(0.5), e.add(c(1), t))
			dinner := e.mul(c(geluK), e.add(c(1), e.mul(u2, c(3*geluC))))
			d = e.add(half1, e.mul(e.mul(e.mul(c(0.5), u), e.sub(c(1), e.mul(t, t))), dinner))
		} else {
			cdf := e.mul(c(0.5), e.add(c(1), e.op("Erf", []string{e.mul(u, c(1/math.Sqrt2))})))
			pdf := e.mul(e.op("Exp", []string{e.mul(e.mul(u, u), c(-0.5))}), c(1/math.Sqrt(2*math.Pi)))
			d = e.add(cdf, e.mul(u, pdf))
		}
		gu := e.mul(g, d)
		out := make([]string, len(n.Input))
		if need[0] {
			out[0] = e.unbroadcast(gu, x)
		}
		if len(need) > 1 && need[1] {
			out[1] = e.unbroadcast(gu, n.Input[1])
		}
		return out
	}
}

// gradQuickGelu: y = x·σ(αx), dy/dx = σ + αx·σ(1 − σ).
func gradQuickGelu(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	x, g := n.Input[0], dy[0]
	dt := e.typeOf(x)
	alpha := e.scalar(float64(graph.FloatAttr(n, "alpha", 1.702)), dt)
	ax := e.mul(x, alpha)
	s := e.op("Sigmoid", []string{ax})
	d := e.add(s, e.mul(ax, e.mul(s, e.sub(e.scalar(1, dt), s))))
	return []string{e.mul(g, d)}
}
