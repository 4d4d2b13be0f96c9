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

// rule is how one op type is differentiated.
type rule struct {
	grad gradFunc
	// diff lists the input slots that gradients flow through. nil means
	// every floating-point input.
	diff []int
}

type opKey struct{ domain, op string }

func key(domain, op string) opKey {
	if domain == "ai.onnx" {
		domain = ""
	}
	return opKey{domain, op}
}

var (
	rules          = map[opKey]rule{}
	decompositions = map[opKey]decomposeFunc{}
)

// register adds the gradient rule of an op; diff as in rule.diff.
func register(domain, op string, g gradFunc, diff ...int) {
	k := key(domain, op)
	if _, dup := rules[k]; dup {
		panic("autodiff: two rules for " + domain + ":" + op)
	}
	rules[k] = rule{grad: g, diff: diff}
}

// registerDecomposition adds a decomposition of a fused op.
func registerDecomposition(domain, op string, d decomposeFunc) {
	k := key(domain, op)
	if _, dup := decompositions[k]; dup {
		panic("autodiff: two decompositions for " + domain + ":" + op)
	}
	decompositions[k] = d
}

func ruleFor(n *onnxpb.NodeProto) (rule, bool) {
	r, ok := rules[key(n.Domain, n.OpType)]
	return r, ok
}

// differentiable reports whether gradients flow through input slot i of a
// node with rule r.
func (r rule) differentiable(i int) bool {
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
	for k := range rules {
		out = append(out, k.domain+":"+k.op)
	}
	for k := range decompositions {
		out = append(out, k.domain+":"+k.op)
	}
	sort.Strings(out)
	return out
}
