package autodiff

import (
	"sort"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// gradFunc emits the vector-Jacobian product of node n. dy holds the
// gradient of each of n's outputs ("" where none flows back), need says
// which inputs want a gradient. It returns one gradient name per input
// ("" for none, which counts as zero); each has exactly its input's shape
// and element type.
type gradFunc func(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string

// decomposeFunc emits standard nodes that compute every output of n, under
// the same names, so that n can be dropped and the emitted nodes
// differentiated instead.
type decomposeFunc func(e *emitter, n *onnxpb.NodeProto)

// inferFunc works out what it can of n's outputs from its inputs, read
// through f: one info per output, in order (a short slice, or nil
// entries, for outputs it says nothing about). It returns fresh infos and
// writes nothing: the inferer records them, merged with what the graph
// declares.
type inferFunc func(f *inferer, n *onnxpb.NodeProto) []*tinfo

// entry is everything autodiff knows about one op. Each family file
// registers the entries of its ops, with each op's inference next to its
// rule.
type entry struct {
	// grad differentiates the op; nil for an op without a rule.
	grad gradFunc
	// diff lists the input slots that gradients flow through (with grad
	// only). nil means every floating-point input.
	diff []int
	// decompose writes the op out in standard ops that have rules, for a
	// fused op without a rule of its own on a gradient path.
	decompose decomposeFunc
	// infer works out the op's output types and shapes. An op without it
	// (or not registered at all) gets the types the graph declares for its
	// outputs, and stays unknown where the graph declares none.
	infer inferFunc
	// declaredTypes, set where an op with a rule has no infer, says why
	// the types the graph declares for its outputs are enough.
	declaredTypes string
	// recompute marks a cheap element-wise op whose output the backward
	// pass may make again instead of keeping it (recompute.go).
	recompute bool
	// product, where set, reports whether node n is a product x·W of an
	// activation (input 0) with a 2-D matrix (input 1), which
	// WithRecomputeProducts recomputes when W is frozen.
	product func(n *onnxpb.NodeProto) bool
}

// opKey names an op: its domain, "" for the default domain (which a node
// may also spell "ai.onnx"), and its type.
type opKey struct{ domain, op string }

// key returns the key of an op, with the default domain normalized to "".
func key(domain, op string) opKey {
	if domain == "ai.onnx" {
		domain = ""
	}
	return opKey{domain, op}
}

func (k opKey) String() string { return k.domain + ":" + k.op }

// registry holds the entry of each op, filled by the family files' init.
var registry = map[opKey]*entry{}

// register adds the entry of an op.
func register(domain, op string, e entry) {
	k := key(domain, op)
	if _, dup := registry[k]; dup {
		panic("autodiff: two registry entries for " + k.String())
	}
	registry[k] = &e
}

// lookup returns the entry of n's op, or nil when the op is not
// registered.
func lookup(n *onnxpb.NodeProto) *entry {
	return registry[key(n.Domain, n.OpType)]
}

// ruleFor returns the entry of n's op when it has a gradient rule.
func ruleFor(n *onnxpb.NodeProto) (*entry, bool) {
	e := lookup(n)
	if e == nil || e.grad == nil {
		return nil, false
	}
	return e, true
}

// differentiable reports whether gradients flow through input slot i of a
// node with rule r.
func (r *entry) differentiable(i int) bool {
	if r.diff == nil {
		return true
	}
	for _, j := range r.diff {
		if j == i {
			return true
		}
	}
	return false
}

// Supported returns the ops that Build can differentiate, as
// "domain:OpType" (the default domain is empty, so "":MatMul reads
// ":MatMul"), sorted. Ops differentiated by decomposing them into standard
// ops are included.
func Supported() []string {
	var out []string
	for k, e := range registry {
		if e.grad != nil || e.decompose != nil {
			out = append(out, k.String())
		}
	}
	sort.Strings(out)
	return out
}
