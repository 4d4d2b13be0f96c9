package graph

import (
	"sort"

	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TopoOrder returns the graph's nodes in an order where each node comes
// after the producers of its inputs. Among nodes that are ready together,
// the original order is kept, so a sorted graph comes back unchanged.
// It fails on a cycle, naming a node on it.
func (m *Model) TopoOrder() ([]*onnxpb.NodeProto, error) {
	nodes := m.Proto.Graph.Node
	producer := make(map[string]int, len(nodes))
	for i, n := range nodes {
		for _, o := range n.Output {
			if o != "" {
				producer[o] = i
			}
		}
	}
	pending := make([]int, len(nodes))
	users := make([][]int, len(nodes))
	for i, n := range nodes {
		seen := map[int]bool{}
		for _, in := range NodeInputs(n) {
			p, ok := producer[in]
			if !ok || seen[p] {
				continue
			}
			seen[p] = true
			pending[i]++
			users[p] = append(users[p], i)
		}
	}
	// ready is a min-heap on original position, kept as a sorted slice:
	// graphs are large but the ready set is small.
	var ready []int
	for i := range nodes {
		if pending[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*onnxpb.NodeProto, 0, len(nodes))
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, nodes[i])
		for _, u := range users[i] {
			pending[u]--
			if pending[u] == 0 {
				k := sort.SearchInts(ready, u)
				ready = append(ready, 0)
				copy(ready[k+1:], ready[k:])
				ready[k] = u
			}
		}
	}
	if len(out) != len(nodes) {
		for i, n := range nodes {
			if pending[i] > 0 {
				return nil, errorf("graph has a cycle through node %q (%s)", n.Name, n.OpType)
			}
		}
	}
	return out, nil
}

// SortNodes puts the graph's nodes into topological order in place.
func (m *Model) SortNodes() error {
	order, err := m.TopoOrder()
	if err != nil {
		return err
	}
	copy(m.Proto.Graph.Node, order)
	return nil
}
