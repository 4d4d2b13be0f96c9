package rewrite

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// newTokenMasks finds the Expand nodes of m that broadcast a causal mask
// built from the new tokens alone to the length of the past: the
// onnxruntime-genai model builder makes its mask so
// (/model/attn_mask_reformat/input_ids_subgraph: a [seq, seq] triangle
// from Range and Less, expanded to [batch, 1, seq, past+seq]), which holds
// only where the past is empty or one token is fed. A prefix is a past on
// every run, so such a model would refuse any prompt longer than one
// token: ONNX Runtime's "invalid expand shape".
//
// An Expand is taken when its data comes from constants and the shapes of
// inputs alone (no input's values), and not from a past input, while its
// target shape reads a past input. past names the past inputs.
func newTokenMasks(m *graph.Model, past []string) []*onnxpb.NodeProto {
	isPast := map[string]bool{}
	for _, p := range past {
		isPast[p] = true
	}
	var found []*onnxpb.NodeProto
	for _, n := range m.Graph().Node {
		if n.OpType != "Expand" || n.Domain != "" || len(n.Input) != 2 {
			continue
		}
		data := ancestry(m, n.Input[0])
		if data.valueOfInput || data.readsAny(isPast) {
			continue
		}
		if ancestry(m, n.Input[1]).readsAny(isPast) {
			found = append(found, n)
		}
	}
	return found
}

// lineage is what a value is computed from: the graph inputs whose shapes
// it reads, and whether it reads any input's values.
type lineage struct {
	shapesOf     map[string]bool
	valueOfInput bool
}

// readsAny reports whether the value reads the shape of one of names.
func (l lineage) readsAny(names map[string]bool) bool {
	for n := range l.shapesOf {
		if names[n] {
			return true
		}
	}
	return false
}

// ancestry walks back from v through its producers: a Shape or Size node
// reads only the shape of its input; any other node reads its inputs'
// values.
func ancestry(m *graph.Model, v string) lineage {
	l := lineage{shapesOf: map[string]bool{}}
	seen := map[string]bool{}
	var walk func(v string, shapeOnly bool)
	walk = func(v string, shapeOnly bool) {
		key := v
		if shapeOnly {
			key += "\x00shape"
		}
		if v == "" || seen[key] {
			return
		}
		seen[key] = true
		if m.Input(v) != nil && m.Initializer(v) == nil {
			if shapeOnly {
				l.shapesOf[v] = true
			} else {
				l.valueOfInput = true
			}
			return
		}
		p := m.Producer(v)
		if p == nil {
			return // an initializer, or a subgraph's outer value
		}
		only := shapeOnly || p.OpType == "Shape" || p.OpType == "Size"
		for _, in := range p.Input {
			walk(in, only)
		}
	}
	walk(v, false)
	return l
}

// widenNewTokenMasks makes each Expand that newTokenMasks found pad its
// data on the left of the last axis, by the target's last size less the
// data's (the past's length, prefix included), repeating the first
// column: row i of a causal mask attends its column 0, so the padding
// attends every past position, and the mask becomes [seq, past+seq] with
// row i attending the past and the new tokens up to i. Where the sizes
// agree (an empty past) or the data's is 1 (which Expand broadcasts
// alike) nothing changes: the rewrite changes no run that succeeded
// before. It needs opset 11 (Pad with its pads as an input).
func (b *prefixGraph) widenNewTokenMasks(plan *prefixPlan, nodes []*onnxpb.NodeProto) {
	if plan.opset < 11 || len(nodes) == 0 {
		return
	}
	m := b.g.Model()
	s := b.g.In("causal_mask")
	last := func(x string) string {
		return s.Op("Slice", []string{x, b.int64s("prefix_mask_last", -1), b.int64s("prefix_mask_end", math.MaxInt64), b.int64s("prefix_axis_0", 0)})
	}
	zero := &onnxpb.TensorProto{DataType: int32(dtype.Int64), Dims: []int64{1}, RawData: make([]byte, 8)}
	for _, n := range nodes {
		data, target := n.Input[0], n.Input[1]
		shape := s.Op("Shape", []string{data})
		diff := s.Op("Sub", []string{last(target), last(shape)})
		zeros := b.int64s("prefix_mask_zero", 0)
		diff = s.Op("Where", []string{s.Op("Less", []string{diff, zeros}), zeros, diff})
		rank := s.Op("Shape", []string{shape})
		before := s.Op("ConstantOfShape", []string{s.Op("Sub", []string{rank, b.int64s("prefix_one", 1)})}, graph.AttrTensor("value", zero))
		after := s.Op("ConstantOfShape", []string{rank}, graph.AttrTensor("value", zero))
		pads := s.Op("Concat", []string{before, diff, after}, graph.AttrInt("axis", 0))
		padded := s.Op("Pad", []string{data, pads}, graph.AttrString("mode", "edge"))
		m.SetNodeInput(n, 0, padded)
		b.site.WidenedMasks = append(b.site.WidenedMasks, n.Name)
	}
}
