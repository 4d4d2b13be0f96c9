package feed

import "github.com/peftonnx/peftonnx/graph/onnxpb"

// PositionLimit is the most positions a model's rotary embeddings cover:
// the rows of the cos_cache that a RotaryEmbedding node (com.microsoft's,
// or ONNX's own from opset 23) or a GroupQueryAttention node with rotary
// inside reads. A sequence past it fails inside ONNX Runtime ("Updating
// cos_cache and sin_cache in RotaryEmbedding is not currently
// supported").
type PositionLimit struct {
	// Positions is the smallest such cache's first dimension; Node names
	// the node that reads it and Cache the cache.
	Positions int64
	Node      string
	Cache     string
}

// RotaryLimit returns the PositionLimit of g, and ok false where no node
// reads a cos_cache initializer of fixed rows (a model without rotary
// embeddings, or one whose caches are computed at run time).
func RotaryLimit(g *onnxpb.GraphProto) (limit PositionLimit, ok bool) {
	dims := make(map[string][]int64, len(g.Initializer))
	for _, t := range g.Initializer {
		dims[t.Name] = t.Dims
	}
	for _, n := range g.Node {
		idx := -1
		switch {
		case n.OpType == "RotaryEmbedding" && n.Domain == "com.microsoft":
			idx = 2 // input, position_ids, cos_cache, sin_cache
		case n.OpType == "RotaryEmbedding" && (n.Domain == "" || n.Domain == "ai.onnx"):
			idx = 1 // X, cos_cache, sin_cache, position_ids
		case n.OpType == "GroupQueryAttention" && n.Domain == "com.microsoft":
			idx = 7 // …, seqlens_k, total_sequence_length, cos_cache, sin_cache
		}
		if idx < 0 || len(n.Input) <= idx {
			continue
		}
		d, found := dims[n.Input[idx]]
		if !found || len(d) != 2 || d[0] <= 0 {
			continue
		}
		if !ok || d[0] < limit.Positions {
			limit, ok = PositionLimit{Positions: d[0], Node: n.Name, Cache: n.Input[idx]}, true
		}
	}
	return limit, ok
}
