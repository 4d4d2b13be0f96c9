package rewrite

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// TokenEmbedding returns the token embedding table of m: the 2-D
// initializer with rows that a Gather on axis 0 reads with the token ids,
// the inputs named ids, directly or through Slice, Reshape, Unsqueeze,
// Squeeze, Flatten, Cast or Identity. It is nil when there is none.
func TokenEmbedding(m *graph.Model, ids ...string) *onnxpb.TensorProto {
	seen := map[string]bool{}
	queue := ids
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		if seen[v] {
			continue
		}
		seen[v] = true
		for _, n := range m.Consumers(v) {
			switch n.OpType {
			case "Gather":
				if len(n.Input) < 2 || n.Input[1] != v || graph.IntAttr(n, "axis", 0) != 0 {
					continue
				}
				if t := m.Initializer(n.Input[0]); t != nil && len(t.Dims) == 2 && t.Dims[0] > 0 {
					return t
				}
			case "Slice", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Cast", "Identity":
				if len(n.Input) > 0 && n.Input[0] == v && len(n.Output) > 0 {
					queue = append(queue, n.Output[0])
				}
			}
		}
	}
	return nil
}
