package graph

import (
	"strconv"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// UniqueName returns base if no value, node or initializer uses it yet,
// otherwise base_1, base_2, …. The name is reserved.
func (m *Model) UniqueName(base string) string {
	ix := m.index()
	name := base
	for i := 1; ix.names[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	ix.names[name] = true
	return name
}

// HasName reports whether name is used by a value, node or initializer.
func (m *Model) HasName(name string) bool { return m.index().names[name] }

// AddNode appends n to the graph. Call SortNodes before saving if n was
// added ahead of its inputs' producers (ONNX wants sorted graphs).
func (m *Model) AddNode(n *onnxpb.NodeProto) *onnxpb.NodeProto {
	m.Proto.Graph.Node = append(m.Proto.Graph.Node, n)
	m.index().addNode(n)
	return n
}

// NewNode builds a node with a unique name derived from name, adds it, and
// returns it. attrs are built with the Attr* functions.
func (m *Model) NewNode(opType, name string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: opType, Name: m.UniqueName(name), Input: inputs, Output: outputs, Attribute: attrs}
	return m.AddNode(n)
}

// RemoveNodes deletes the given nodes from the graph. Their names, and
// their outputs' and inputs' names, become free where nothing else uses
// them.
func (m *Model) RemoveNodes(nodes ...*onnxpb.NodeProto) {
	if len(nodes) == 0 {
		return
	}
	drop := make(map[*onnxpb.NodeProto]bool, len(nodes))
	ix := m.index()
	for _, n := range nodes {
		drop[n] = true
		ix.removeNode(n)
	}
	kept := m.Proto.Graph.Node[:0]
	for _, n := range m.Proto.Graph.Node {
		if !drop[n] {
			kept = append(kept, n)
		}
	}
	for i := len(kept); i < len(m.Proto.Graph.Node); i++ {
		m.Proto.Graph.Node[i] = nil
	}
	m.Proto.Graph.Node = kept
	for _, n := range nodes {
		m.release(n.Name)
		m.release(n.Output...)
		m.release(NodeInputs(n)...)
	}
}

// SetNodeInput makes input i of n read value, keeping the indexes current.
func (m *Model) SetNodeInput(n *onnxpb.NodeProto, i int, value string) {
	ix := m.index()
	ix.removeNode(n)
	old := n.Input[i]
	n.Input[i] = value
	ix.addNode(n)
	m.release(old)
}

// ReplaceUses makes every node that reads old read new instead, except the
// nodes in skip. Graph outputs are not renamed.
func (m *Model) ReplaceUses(old, new string, skip ...*onnxpb.NodeProto) {
	skipped := map[*onnxpb.NodeProto]bool{}
	for _, n := range skip {
		skipped[n] = true
	}
	for _, n := range append([]*onnxpb.NodeProto(nil), m.Consumers(old)...) {
		if skipped[n] {
			continue
		}
		for i, in := range n.Input {
			if in == old {
				m.SetNodeInput(n, i, new)
			}
		}
	}
}

// AddInitializer adds t to the graph, replacing an initializer of the same
// name.
func (m *Model) AddInitializer(t *onnxpb.TensorProto) {
	ix := m.index()
	if old := ix.initializer[t.Name]; old != nil {
		for i, x := range m.Proto.Graph.Initializer {
			if x == old {
				m.Proto.Graph.Initializer[i] = t
			}
		}
	} else {
		m.Proto.Graph.Initializer = append(m.Proto.Graph.Initializer, t)
	}
	ix.initializer[t.Name] = t
	ix.names[t.Name] = true
}

// RemoveInitializer deletes the initializer called name, if any, and
// returns it. The name becomes free where nothing else uses it.
func (m *Model) RemoveInitializer(name string) *onnxpb.TensorProto {
	ix := m.index()
	t := ix.initializer[name]
	if t == nil {
		return nil
	}
	delete(ix.initializer, name)
	inits := m.Proto.Graph.Initializer
	for i, x := range inits {
		if x == t {
			m.Proto.Graph.Initializer = append(inits[:i:i], inits[i+1:]...)
			break
		}
	}
	m.release(name)
	return t
}

// AddInput appends a graph input.
func (m *Model) AddInput(v *onnxpb.ValueInfoProto) {
	m.Proto.Graph.Input = append(m.Proto.Graph.Input, v)
	ix := m.index()
	ix.input[v.Name] = v
	ix.names[v.Name] = true
}

// RemoveInput deletes the graph input called name, if any. The name
// becomes free where nothing else uses it.
func (m *Model) RemoveInput(name string) {
	m.Proto.Graph.Input = withoutValue(m.Proto.Graph.Input, name)
	delete(m.index().input, name)
	m.release(name)
}

// AddOutput appends a graph output.
func (m *Model) AddOutput(v *onnxpb.ValueInfoProto) {
	m.Proto.Graph.Output = append(m.Proto.Graph.Output, v)
	m.index().names[v.Name] = true
}

// RemoveOutput deletes the graph output called name, if any. The name
// becomes free where nothing else uses it.
func (m *Model) RemoveOutput(name string) {
	m.Proto.Graph.Output = withoutValue(m.Proto.Graph.Output, name)
	m.release(name)
}

// withoutValue returns vs without its first value called name, in a new
// array where there is one (vs may be shared), else vs itself.
func withoutValue(vs []*onnxpb.ValueInfoProto, name string) []*onnxpb.ValueInfoProto {
	for i, v := range vs {
		if v.Name == name {
			return append(vs[:i:i], vs[i+1:]...)
		}
	}
	return vs
}
