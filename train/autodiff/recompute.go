package autodiff

import (
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// recomputable are the cheap element-wise ops whose outputs the backward
// pass may compute again instead of keeping them from the forward pass.
var recomputable = map[string]bool{
	"Sigmoid": true, "Tanh": true, "Relu": true, "Exp": true, "Neg": true, "Sqrt": true,
	"Reciprocal": true, "Erf": true, "Softplus": true, "Abs": true, "Cast": true,
	"Add": true, "Sub": true, "Mul": true, "Div": true,
}

// recompute lowers what the forward pass keeps for the backward pass: a
// value that backward nodes read, made by a cheap element-wise forward
// node whose inputs the backward pass keeps anyway (or are constants, or
// were recomputed themselves), is made again by a copy of that node next
// to its backward readers, so that the forward value dies with the
// forward pass. For a LLaMA MLP, the SiLU's sigmoid and product and the
// RMSNorm's division and scaling go: several hundred megabytes for a
// GPT-2-small-sized model at 8×128.
//
// A copy that reads no recomputed value reads one of its forward inputs
// through a Reshape to that input's own shape (an alias, no copy), so that
// ONNX Runtime's common-subexpression pass does not merge the copy back
// into the forward node.
func (b *builder) recompute() {
	forward := map[*onnxpb.NodeProto]bool{}
	made := map[string]bool{} // values the forward nodes make
	// dynamic: the values that depend on a graph input, as opposed to
	// those that ONNX Runtime folds into constants.
	dynamic := map[string]bool{}
	for _, in := range b.m.Graph().Input {
		if b.m.Initializer(in.Name) == nil {
			dynamic[in.Name] = true
		}
	}
	for _, n := range b.nodes {
		forward[n] = true
		dyn := false
		for _, in := range n.Input {
			dyn = dyn || dynamic[in]
		}
		for _, o := range n.Output {
			made[o] = true
			dynamic[o] = dyn
		}
	}
	// readers: the backward nodes that read each forward value.
	readers := map[string][]*onnxpb.NodeProto{}
	for _, n := range b.m.Graph().Node {
		if forward[n] {
			continue
		}
		for _, in := range n.Input {
			if made[in] {
				readers[in] = append(readers[in], n)
			}
		}
	}
	kept := func(v string) bool { return !made[v] || len(readers[v]) > 0 }
	again := map[string]string{} // forward value -> its recomputed copy
	e := newEmitter(b.m, b.inf, b.opset)
	e.scope = "recompute"
	for _, n := range b.nodes {
		if n.Domain != "" || !recomputable[n.OpType] || len(n.Output) != 1 {
			continue
		}
		v := n.Output[0]
		if len(readers[v]) == 0 || b.m.IsGraphOutput(v) {
			continue
		}
		// Every input must be live in the backward pass anyway, and one
		// must depend on a graph input: a node of constants alone is folded
		// by ONNX Runtime, and a copy would be folded into a second
		// constant. The alias goes on such an input for the same reason.
		ok, activation := true, false
		for _, in := range n.Input {
			_, re := again[in]
			if !re && (in == "" || !kept(in)) {
				ok = false
			}
			activation = activation || re || dynamic[in]
		}
		if !ok || !activation {
			continue
		}
		inputs := make([]string, len(n.Input))
		for i, in := range n.Input {
			inputs[i] = in
			if c, re := again[in]; re {
				inputs[i] = c
			}
		}
		if !fresh(n.Input, again) {
			for i, in := range n.Input {
				if dynamic[in] {
					inputs[i] = e.op("Reshape", []string{in, e.op("Shape", []string{in})})
					info := *b.inf.get(in)
					e.inf.info[inputs[i]] = &info
					break
				}
			}
		}
		c := e.emit(n.Domain, n.OpType, inputs, 1, n.Attribute...)[0]
		info := *b.inf.get(v)
		e.inf.info[c] = &info
		for _, r := range readers[v] {
			for i, in := range r.Input {
				if in == v {
					b.m.SetNodeInput(r, i, c)
				}
			}
		}
		again[v] = c
		delete(readers, v)
	}
}

// fresh reports whether one of inputs has a recomputed copy, which makes a
// node that reads the copy distinct from the forward one.
func fresh(inputs []string, again map[string]string) bool {
	for _, in := range inputs {
		if _, ok := again[in]; ok {
			return true
		}
	}
	return false
}
