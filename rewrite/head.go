package rewrite

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// headPassOps are the nodes that may stand between an output head and the
// graph output it produces: shape changes, casts, a bias and the final
// normalisation of scores.
var headPassOps = map[string]bool{
	"Identity": true, "Cast": true, "Reshape": true, "Transpose": true, "Squeeze": true, "Unsqueeze": true,
	"Flatten": true, "Softmax": true, "LogSoftmax": true, "Sigmoid": true, "Add": true, "Mul": true, "Div": true,
}

// markHeads sets Head on the layers whose output reaches a graph output
// through headPassOps alone, where an Add, Mul or Div takes its other
// operand from an initializer or a constant: the LM head or classifier
// that HF PEFT's "all-linear" leaves out.
func markHeads(m *graph.Model, ls []Linear) {
	byOutput := map[string]int{}
	for i, l := range ls {
		byOutput[l.Output] = i
	}
	for _, o := range m.Graph().Output {
		v := o.Name
		for steps := 0; steps < 16 && v != ""; steps++ {
			if i, ok := byOutput[v]; ok {
				ls[i].Head = true
				break
			}
			p := m.Producer(v)
			if p == nil || !headPassOps[p.OpType] || len(p.Input) == 0 || (p.Domain != "" && p.Domain != "ai.onnx") {
				break
			}
			v = activationInput(m, p)
		}
	}
	// Layers that share a head's weight are that head too.
	heads := map[string]bool{}
	for _, l := range ls {
		if l.Head {
			heads[l.Weight] = true
		}
	}
	for i := range ls {
		ls[i].Head = heads[ls[i].Weight]
	}
}

// activationInput returns the input of a headPassOps node that carries the
// activation: the first, or for a binary op the one that is not constant;
// "" when both vary.
func activationInput(m *graph.Model, n *onnxpb.NodeProto) string {
	switch n.OpType {
	case "Add", "Mul", "Div":
		if len(n.Input) != 2 {
			return ""
		}
		a, b := n.Input[0], n.Input[1]
		switch {
		case isConstant(m, b):
			return a
		case isConstant(m, a) && n.OpType != "Div":
			return b
		}
		return ""
	}
	return n.Input[0]
}

// isConstant reports whether value is an initializer or a Constant node's
// output.
func isConstant(m *graph.Model, value string) bool {
	if m.Initializer(value) != nil {
		return true
	}
	p := m.Producer(value)
	return p != nil && p.OpType == "Constant"
}
