package rewrite

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// NestedLayer is a MatMul, Gemm or Conv node inside a subgraph of an If,
// Loop or Scan node (at any depth), whose weight is an initializer or a
// value from an outer scope. LoRA does not adapt such layers: the branch
// and the merge work on the main graph only.
type NestedLayer struct {
	// Node and Op are the nested node's name and type.
	Node string `json:"node"`
	Op   string `json:"op"`
	// Owner is the main-graph node whose subgraph holds it, and Attr the
	// subgraph's attribute (then_branch, else_branch, body).
	Owner string `json:"owner"`
	Attr  string `json:"attr"`
}

// FindNestedLayers returns the layers that sit inside subgraphs of m.
func FindNestedLayers(m *graph.Model) []NestedLayer {
	var out []NestedLayer
	var walk func(owner *onnxpb.NodeProto, attr string, g *onnxpb.GraphProto)
	walk = func(owner *onnxpb.NodeProto, attr string, g *onnxpb.GraphProto) {
		produced := map[string]bool{}
		for _, n := range g.Node {
			for _, o := range n.Output {
				produced[o] = true
			}
		}
		for _, n := range g.Node {
			if (n.OpType == "MatMul" || n.OpType == "Gemm" || n.OpType == "Conv") && (n.Domain == "" || n.Domain == "ai.onnx") && len(n.Input) > 1 {
				if w := n.Input[1]; !produced[w] || m.Initializer(w) != nil {
					out = append(out, NestedLayer{Node: n.Name, Op: n.OpType, Owner: owner.Name, Attr: attr})
				} else if p := producerIn(g, w); p != nil && len(p.Input) > 0 && !produced[p.Input[0]] {
					// A weight behind Cast, Transpose or DequantizeLinear.
					out = append(out, NestedLayer{Node: n.Name, Op: n.OpType, Owner: owner.Name, Attr: attr})
				}
			}
			eachSubgraph(n, func(a string, sub *onnxpb.GraphProto) { walk(owner, a, sub) })
		}
	}
	for _, n := range m.Graph().Node {
		eachSubgraph(n, func(a string, sub *onnxpb.GraphProto) { walk(n, a, sub) })
	}
	return out
}

// eachSubgraph calls f with every subgraph attribute of n.
func eachSubgraph(n *onnxpb.NodeProto, f func(attr string, g *onnxpb.GraphProto)) {
	for _, a := range n.Attribute {
		if a.G != nil {
			f(a.Name, a.G)
		}
		for _, g := range a.Graphs {
			f(a.Name, g)
		}
	}
}

// producerIn returns the node of g that writes v, or nil.
func producerIn(g *onnxpb.GraphProto, v string) *onnxpb.NodeProto {
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o == v {
				return n
			}
		}
	}
	return nil
}

// nestedNote says, for messages about layers that were not found, which
// layers of m sit inside subgraphs; "" where none do.
func nestedNote(m *graph.Model) string {
	ls := FindNestedLayers(m)
	if len(ls) == 0 {
		return ""
	}
	owners := map[string]bool{}
	var names []string
	for i, l := range ls {
		owners[l.Owner] = true
		if i < 4 {
			names = append(names, fmt.Sprintf("%s %q in %s of %q", l.Op, l.Node, l.Attr, l.Owner))
		}
	}
	if len(ls) > 4 {
		names = append(names, "…")
	}
	return "; " + strconv.Itoa(len(ls)) + " layers sit inside the subgraphs of " + strconv.Itoa(len(owners)) + " If/Loop/Scan nodes (" + strings.Join(names, ", ") + "), which LoRA does not adapt: only main-graph layers take a branch"
}
