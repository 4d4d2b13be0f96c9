package autodiff

import (
	"slices"

	"github.com/peftonnx/peftonnx/graph"
)

// Decompose returns a copy of m in which every node of the given op types
// ("domain:OpType", as Supported lists them: "com.microsoft:GroupQueryAttention")
// that has a decomposition is written out in standard ops, computing what
// ONNX Runtime's kernel computes: for a forward run that a kernel refuses
// (GroupQueryAttention with a past for several rows of more than one new
// token, as the evaluation of prefix tuning is) or that ONNX Runtime's CPU
// does not have (BiasAdd, packed MultiHeadAttention). Every other node,
// the inputs and the outputs stay as they are; m is not changed. A node
// whose attributes its decomposition refuses is an error that names it.
func Decompose(m *graph.Model, ops ...string) (*graph.Model, error) {
	out := m.Clone()
	out.Reindex()
	order, err := out.TopoOrder()
	if err != nil {
		return nil, errorf("%v", err)
	}
	opset := out.Opset("")
	if opset == 0 {
		opset = 17
	}
	inf := newInferer(out)
	inf.run(order)
	e := newEmitter(out, inf, opset)
	for _, n := range order {
		r := lookup(n)
		if r == nil || r.decompose == nil || !slices.Contains(ops, key(n.Domain, n.OpType).String()) {
			continue
		}
		e.scope = nodeScope(n)
		out.RemoveNodes(n)
		r.decompose(e, n)
		if e.err != nil {
			return nil, errorf("cannot decompose %s node %s: %w", opName(n), label(n), e.err)
		}
	}
	if err := out.SortNodes(); err != nil {
		return nil, errorf("%v", err)
	}
	return out, nil
}
