package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestClassLoss(t *testing.T) {
	requireORT(t)
	labels := []int64{1, 3, -100, 0, 3, 2}
	for _, op := range []string{"SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"} {
		for _, reduction := range []string{"mean", "sum", "none"} {
			for _, variant := range []string{"plain", "ignore", "weights", "3d"} {
				t.Run(op+"/"+reduction+"/"+variant, func(t *testing.T) {
					forModes(t, []int64{13}, []declMode{declStatic, declSymbolic}, func(t *testing.T, opset int64, mode declMode) {
						g := newTestGraph(t, opset, dtype.Float64, mode)
						sd, ld, lv := i64s(6, 4), i64s(6), labels
						if variant == "3d" {
							sd, ld, lv = i64s(2, 4, 3), i64s(2, 3), labels
						}
						if variant == "plain" || variant == "weights" {
							lv = []int64{1, 3, 2, 0, 3, 2}
						}
						scores := g.param("scores", sd, uniform(-2, 2))
						in := []string{scores, g.intInput("labels", ld, lv)}
						if variant == "weights" {
							in = append(in, g.randFloats(i64s(4), uniform(0.2, 2)))
						}
						attrs := []*onnxpb.AttributeProto{graph.AttrString("reduction", reduction)}
						if variant == "ignore" || variant == "3d" {
							attrs = append(attrs, graph.AttrInt("ignore_index", -100))
						}
						if op == "NegativeLogLikelihoodLoss" {
							in[0] = g.node("LogSoftmax", []string{scores}, graph.AttrInt("axis", 1))
						}
						g.check(g.node(op, in, attrs...))
					})
				})
			}
		}
	}
}

// TestCrossEntropyLogProb differentiates both outputs of
// SoftmaxCrossEntropyLoss.
func TestCrossEntropyLogProb(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 13, dtype.Float64, declStatic)
	scores := g.param("scores", i64s(3, 4), nil)
	outs := g.nodeN("", "SoftmaxCrossEntropyLoss", []string{scores, g.intInput("labels", i64s(3), i64s(0, 3, 1))}, 2)
	y := g.node("Add", []string{outs[1], outs[0]})
	g.check(y)
}
