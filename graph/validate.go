package graph

import (
	"errors"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Validate checks the main graph's structure: every value a node or graph
// output reads is defined (by a graph input, an initializer or a node), no
// name is defined twice, and there is no cycle. It reports every problem
// it finds, joined.
func (m *Model) Validate() error {
	g := m.Proto.Graph
	var errs []error
	defined := map[string]string{} // name -> what defines it
	define := func(name, by string) {
		if name == "" {
			return
		}
		if prev, ok := defined[name]; ok {
			errs = append(errs, errorf("%q is defined twice: by %s and by %s", name, prev, by))
			return
		}
		defined[name] = by
	}
	inputs := map[string]bool{}
	for _, v := range g.Input {
		inputs[v.Name] = true
		define(v.Name, "graph input")
	}
	for _, t := range g.Initializer {
		if inputs[t.Name] {
			continue // an initializer may give an input its default
		}
		define(t.Name, "initializer")
	}
	nodeNames := map[string]bool{}
	for _, n := range g.Node {
		if n.Name != "" {
			if nodeNames[n.Name] {
				errs = append(errs, errorf("node name %q is used twice", n.Name))
			}
			nodeNames[n.Name] = true
		}
		for _, o := range n.Output {
			define(o, "node "+nodeLabel(n))
		}
	}
	for _, n := range g.Node {
		for _, in := range NodeInputs(n) {
			if _, ok := defined[in]; !ok {
				errs = append(errs, errorf("node %s reads %q, which nothing defines", nodeLabel(n), in))
			}
		}
	}
	for _, o := range g.Output {
		if _, ok := defined[o.Name]; !ok {
			errs = append(errs, errorf("graph output %q is not defined", o.Name))
		}
	}
	if _, err := m.TopoOrder(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// nodeLabel names a node for messages: its name and op, or its first output.
func nodeLabel(n *onnxpb.NodeProto) string {
	if n.Name != "" {
		return "\"" + n.Name + "\" (" + n.OpType + ")"
	}
	if len(n.Output) > 0 {
		return n.OpType + " -> \"" + n.Output[0] + "\""
	}
	return n.OpType
}
