package train

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// isHalf reports whether an element type is float16 or bfloat16.
func isHalf(t int32) bool { return t == graph.Float16 || t == graph.BFloat16 }

// hasHalf reports whether m holds or computes float16 or bfloat16 values:
// in an initializer, a declared input, output or value, a constant, or a
// Cast.
func hasHalf(m *graph.Model) bool {
	found := false
	walkTypes(m.Graph(), func(t *int32) {
		found = found || isHalf(*t)
	}, func(tp *onnxpb.TensorProto) {
		found = found || isHalf(tp.DataType)
	})
	return found
}

// upcast rewrites m, a clone the trainer owns, to compute in float32 where
// it computed in float16 or bfloat16: initializers and constants are
// converted, Casts to 16 bits cast to float32 instead, and declared types
// follow. Tensors are replaced, never written in place, so a model that m
// was cloned from keeps its bytes.
func upcast(m *graph.Model) error {
	var err error
	walkTypes(m.Graph(), func(t *int32) {
		if isHalf(*t) {
			*t = graph.Float32
		}
	}, func(tp *onnxpb.TensorProto) {
		if err != nil || !isHalf(tp.DataType) {
			return
		}
		vals, e := m.Float32s(tp)
		if e != nil {
			err = errorf("float32 copy of %q: %v", tp.Name, e)
			return
		}
		tp.DataType = graph.Float32
		if e := graph.SetFloat32s(tp, vals); e != nil {
			err = errorf("float32 copy of %q: %v", tp.Name, e)
		}
	})
	m.Reindex()
	return err
}

// walkTypes calls elem with every element type that g declares (inputs,
// outputs, value infos, and the type attributes of Cast, the random ops and
// EyeLike), and tensor with every tensor it holds (initializers and
// attribute tensors), subgraphs included.
func walkTypes(g *onnxpb.GraphProto, elem func(*int32), tensor func(*onnxpb.TensorProto)) {
	for _, t := range g.Initializer {
		tensor(t)
	}
	for _, vs := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, v := range vs {
			if tt := v.GetType().GetTensorType(); tt != nil {
				elem(&tt.ElemType)
			}
		}
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			if a.T != nil {
				tensor(a.T)
			}
			for _, t := range a.Tensors {
				tensor(t)
			}
			if a.G != nil {
				walkTypes(a.G, elem, tensor)
			}
			for _, sg := range a.Graphs {
				walkTypes(sg, elem, tensor)
			}
			if (n.OpType == "Cast" && a.Name == "to") || a.Name == "dtype" {
				t := int32(a.I)
				elem(&t)
				a.I = int64(t)
			}
		}
	}
}
