package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

func TestGelu(t *testing.T) {
	requireORT(t)
	cases := []struct {
		name, domain, op string
		bias             bool
		opset            int64
		attrs            []*onnxpb.AttributeProto
	}{
		{name: "ms_Gelu", domain: "com.microsoft", op: "Gelu", opset: 17},
		{name: "FastGelu", domain: "com.microsoft", op: "FastGelu", opset: 17},
		{name: "FastGelu_bias", domain: "com.microsoft", op: "FastGelu", bias: true, opset: 17},
		{name: "BiasGelu", domain: "com.microsoft", op: "BiasGelu", bias: true, opset: 17},
		{name: "QuickGelu", domain: "com.microsoft", op: "QuickGelu", opset: 17, attrs: []*onnxpb.AttributeProto{graph.AttrFloat("alpha", 1.5)}},
		{name: "Gelu20", op: "Gelu", opset: 20},
		{name: "Gelu20_tanh", op: "Gelu", opset: 20, attrs: []*onnxpb.AttributeProto{graph.AttrString("approximate", "tanh")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forModes(t, []int64{c.opset}, []declMode{declStatic, declUnranked}, func(t *testing.T, opset int64, mode declMode) {
				// ONNX Runtime's CPU kernels of these ops are float32 only.
				g := newTestGraph(t, opset, dtype.Float32, mode)
				in := []string{g.param("x", i64s(2, 3, 4), uniform(-3, 3))}
				if c.bias {
					in = append(in, g.param("bias", i64s(4), nil))
				}
				g.check(g.nodeN(c.domain, c.op, in, 1, c.attrs...)[0])
			})
		})
	}
}

// TestGeluDecomposed differentiates the Erf-based GELU that PyTorch
// exports (x·0.5·(1 + erf(x/√2))) through the rules of its parts.
func TestGeluDecomposed(t *testing.T) {
	requireORT(t)
	g := newTestGraph(t, 11, dtype.Float32, declSymbolic)
	x := g.param("x", i64s(2, 3), uniform(-3, 3))
	e := g.node("Erf", []string{g.node("Div", []string{x, g.floats(nil, 1.4142135623730951)})})
	y := g.node("Mul", []string{g.node("Mul", []string{x, g.node("Add", []string{e, g.floats(nil, 1)})}), g.floats(nil, 0.5)})
	g.check(y)
}
