package autodiff

import (
	"slices"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// movement are the ops that only move or repeat the elements of their
// first input, as directed by constant other inputs: a copy of them costs
// one pass over memory, no arithmetic.
var movement = map[string]bool{"Unsqueeze": true, "Squeeze": true, "Reshape": true, "Transpose": true, "Expand": true}

// expansions lowers what the forward pass keeps for values that a chain of
// data-movement nodes with an Expand in it made from a smaller forward
// value: grouped-query attention's repeat_kv (Unsqueeze, Expand, Reshape),
// which makes keys and values for every query head out of fewer key/value
// heads, and the Transpose of the keys after it. The backward pass then
// keeps the source (for a LLaMA of 12 heads over 4 key/value heads, a third
// of the size) and makes the expanded value again next to its readers:
// the same elements, so the gradients are the same bit for bit.
func (r *recomputer) expansions() {
	for _, n := range r.b.nodes {
		if len(n.Output) != 1 || !movement[n.OpType] || n.Domain != "" {
			continue
		}
		v := n.Output[0]
		if len(r.readers[v]) == 0 || r.b.m.IsGraphOutput(v) {
			continue
		}
		chain, src, ok := r.expandChain(n)
		if !ok {
			continue
		}
		cur := src
		if c, again := r.again[src]; again {
			cur = c
		} else {
			// An alias of the source, so that ONNX Runtime's
			// common-subexpression pass does not merge the copies back into
			// the forward nodes (as copyOf does).
			cur = r.e.op("Reshape", []string{src, r.e.op("Shape", []string{src})})
			r.e.inf.record(cur, *r.b.inf.get(src))
			r.readers[src] = append(r.readers[src], r.b.m.Producer(cur))
		}
		for _, c := range slices.Backward(chain) {
			inputs := slices.Clone(c.Input)
			inputs[0] = cur
			cur = r.e.emit(c.Domain, c.OpType, inputs, 1, c.Attribute...)[0]
			r.e.inf.record(cur, *r.b.inf.get(c.Output[0]))
			r.again[c.Output[0]] = cur
		}
		for _, rd := range r.readers[v] {
			for i, in := range rd.Input {
				if in == v {
					r.b.m.SetNodeInput(rd, i, cur)
				}
			}
		}
		delete(r.readers, v)
	}
}

// expandChain walks up from the movement node n through the movement nodes
// that make its first input, to the first value that is not made by one
// (or that the pass made again already), and returns the chain (n first)
// and that source. ok is false unless the chain repeats elements (has an
// Expand) or starts from a value made again, and unless no other input along
// it depends on a graph input (shapes and axes are constants).
func (r *recomputer) expandChain(n *onnxpb.NodeProto) (chain []*onnxpb.NodeProto, src string, ok bool) {
	grows := false
	for {
		for _, in := range n.Input[1:] {
			if r.dynamic[in] {
				return nil, "", false
			}
		}
		grows = grows || n.OpType == "Expand"
		chain = append(chain, n)
		src = n.Input[0]
		if _, again := r.again[src]; again {
			return chain, src, true
		}
		p := r.producer[src]
		if p == nil || len(p.Output) != 1 || !movement[p.OpType] || p.Domain != "" {
			return chain, src, grows && r.dynamic[src]
		}
		n = p
	}
}
