package graph

import (
	"container/heap"

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
	// lastUser[p] is 1 + the last node that counted p as a producer, so
	// that a node reading two outputs of one producer counts it once.
	lastUser := make([]int, len(nodes))
	for i, n := range nodes {
		for _, in := range NodeInputs(n) {
			p, ok := producer[in]
			if !ok || lastUser[p] == i+1 {
				continue
			}
			lastUser[p] = i + 1
			pending[i]++
			users[p] = append(users[p], i)
		}
	}
	// ready holds the nodes whose inputs are all made, smallest original
	// position first: a heap, so that adversarial orders cost n log n.
	ready := &positionHeap{}
	for i := range nodes {
		if pending[i] == 0 {
			*ready = append(*ready, i)
		}
	}
	heap.Init(ready)
	out := make([]*onnxpb.NodeProto, 0, len(nodes))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		out = append(out, nodes[i])
		for _, u := range users[i] {
			pending[u]--
			if pending[u] == 0 {
				heap.Push(ready, u)
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

// positionHeap is a min-heap of node positions.
type positionHeap []int

func (h positionHeap) Len() int           { return len(h) }
func (h positionHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h positionHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *positionHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *positionHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
