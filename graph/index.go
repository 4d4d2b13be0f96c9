package graph

import "github.com/peftonnx/peftonnx/graph/onnxpb"

// index maps value names to where they are defined and used.
type index struct {
	producer    map[string]*onnxpb.NodeProto
	consumers   map[string][]*onnxpb.NodeProto
	initializer map[string]*onnxpb.TensorProto
	input       map[string]*onnxpb.ValueInfoProto
	nodeByName  map[string]*onnxpb.NodeProto
	names       map[string]bool // every name in use: values, nodes, initializers
}

// Reindex rebuilds the name indexes. Call it after editing Proto directly.
func (m *Model) Reindex() {
	g := m.Proto.Graph
	ix := &index{
		producer:    make(map[string]*onnxpb.NodeProto, len(g.Node)),
		consumers:   make(map[string][]*onnxpb.NodeProto, len(g.Node)),
		initializer: make(map[string]*onnxpb.TensorProto, len(g.Initializer)),
		input:       make(map[string]*onnxpb.ValueInfoProto, len(g.Input)),
		nodeByName:  make(map[string]*onnxpb.NodeProto, len(g.Node)),
		names:       make(map[string]bool, 3*len(g.Node)),
	}
	for _, t := range g.Initializer {
		ix.initializer[t.Name] = t
		ix.names[t.Name] = true
	}
	for _, v := range g.Input {
		ix.input[v.Name] = v
		ix.names[v.Name] = true
	}
	for _, v := range g.Output {
		ix.names[v.Name] = true
	}
	for _, n := range g.Node {
		ix.addNode(n)
	}
	m.idx = ix
}

func (ix *index) addNode(n *onnxpb.NodeProto) {
	if n.Name != "" {
		ix.nodeByName[n.Name] = n
		ix.names[n.Name] = true
	}
	for _, o := range n.Output {
		if o != "" {
			ix.producer[o] = n
			ix.names[o] = true
		}
	}
	for _, in := range NodeInputs(n) {
		ix.consumers[in] = appendOnce(ix.consumers[in], n)
	}
}

func (ix *index) removeNode(n *onnxpb.NodeProto) {
	if n.Name != "" && ix.nodeByName[n.Name] == n {
		delete(ix.nodeByName, n.Name)
	}
	for _, o := range n.Output {
		if ix.producer[o] == n {
			delete(ix.producer, o)
		}
	}
	for _, in := range NodeInputs(n) {
		cs := ix.consumers[in]
		for i, c := range cs {
			if c == n {
				cs = append(cs[:i:i], cs[i+1:]...)
				break
			}
		}
		if len(cs) == 0 {
			delete(ix.consumers, in)
		} else {
			ix.consumers[in] = cs
		}
	}
}

// release frees those of names that nothing in m's graph uses any more,
// so that HasName and UniqueName see them as a reload would: a name stays
// while an initializer, graph input or output, node or node output has
// it, or a node still reads it.
func (m *Model) release(names ...string) {
	ix := m.index()
	for _, name := range names {
		if name == "" || !ix.names[name] || ix.initializer[name] != nil || ix.input[name] != nil ||
			ix.producer[name] != nil || ix.nodeByName[name] != nil || len(ix.consumers[name]) > 0 || m.IsGraphOutput(name) {
			continue
		}
		delete(ix.names, name)
	}
}

func appendOnce(ns []*onnxpb.NodeProto, n *onnxpb.NodeProto) []*onnxpb.NodeProto {
	for _, x := range ns {
		if x == n {
			return ns
		}
	}
	return append(ns, n)
}

func (m *Model) index() *index {
	if m.idx == nil {
		m.Reindex()
	}
	return m.idx
}

// NodeInputs returns the value names a node reads: its inputs, and the
// outer-scope names that its subgraphs (If, Loop, Scan) use. Empty names of
// omitted optional inputs are left out.
func NodeInputs(n *onnxpb.NodeProto) []string {
	var out []string
	for _, in := range n.Input {
		if in != "" {
			out = append(out, in)
		}
	}
	for _, a := range n.Attribute {
		if a.G != nil {
			out = append(out, outerNames(a.G)...)
		}
		for _, g := range a.Graphs {
			out = append(out, outerNames(g)...)
		}
	}
	return out
}

// outerNames returns the names a subgraph reads without defining them.
func outerNames(g *onnxpb.GraphProto) []string {
	defined := map[string]bool{}
	for _, v := range g.Input {
		defined[v.Name] = true
	}
	for _, t := range g.Initializer {
		defined[t.Name] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			defined[o] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	use := func(name string) {
		if name != "" && !defined[name] && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, n := range g.Node {
		for _, in := range NodeInputs(n) {
			use(in)
		}
	}
	for _, v := range g.Output {
		use(v.Name)
	}
	return out
}

// Producer returns the node that outputs name, or nil for graph inputs,
// initializers and unknown names.
func (m *Model) Producer(name string) *onnxpb.NodeProto { return m.index().producer[name] }

// Consumers returns the nodes that read name, in graph order of insertion.
// The slice must not be modified.
func (m *Model) Consumers(name string) []*onnxpb.NodeProto { return m.index().consumers[name] }

// Initializer returns the initializer called name, or nil.
func (m *Model) Initializer(name string) *onnxpb.TensorProto { return m.index().initializer[name] }

// Input returns the graph input called name, or nil.
func (m *Model) Input(name string) *onnxpb.ValueInfoProto { return m.index().input[name] }

// NodeByName returns the node called name, or nil.
func (m *Model) NodeByName(name string) *onnxpb.NodeProto { return m.index().nodeByName[name] }

// IsGraphOutput reports whether name is an output of the main graph.
func (m *Model) IsGraphOutput(name string) bool {
	for _, o := range m.Proto.Graph.Output {
		if o.Name == name {
			return true
		}
	}
	return false
}
