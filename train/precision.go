package train

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// isHalf reports whether an element type is float16 or bfloat16.
func isHalf(t dtype.Type) bool { return t == dtype.Float16 || t == dtype.BFloat16 }

// hasHalf reports whether m holds or computes float16 or bfloat16 values:
// in an initializer, a declared input, output or value, a constant, or a
// Cast.
func hasHalf(m *graph.Model) bool {
	found := false
	walkTypes(m.Graph(), func(t dtype.Type) dtype.Type {
		found = found || isHalf(t)
		return t
	}, func(tp *onnxpb.TensorProto) {
		found = found || isHalf(graph.TypeOf(tp))
	})
	return found
}

// upcast rewrites m, a clone the trainer owns, to compute in float32 where
// it computed in float16 or bfloat16: constants and the parameters named
// in params are converted, Casts to 16 bits cast to float32 instead, and
// declared types follow. Large frozen initializers stay 16-bit, behind a
// Cast to float32 under their old name (see castFrozen). Tensors are
// replaced, never written in place, so a model that m was cloned from
// keeps its bytes.
func upcast(m *graph.Model, params []string) error {
	kept := castFrozen(m, params)
	var err error
	walkTypes(m.Graph(), func(t dtype.Type) dtype.Type {
		if isHalf(t) {
			return dtype.Float32
		}
		return t
	}, func(tp *onnxpb.TensorProto) {
		if err != nil || !isHalf(graph.TypeOf(tp)) || kept[tp] {
			return
		}
		vals, e := m.Float32s(tp)
		if e != nil {
			err = errorf("float32 copy of %q: %w", tp.Name, e)
			return
		}
		tp.DataType = int32(dtype.Float32)
		if e := graph.SetFloat32s(tp, vals); e != nil {
			err = errorf("float32 copy of %q: %w", tp.Name, e)
		}
	})
	m.Reindex()
	return err
}

// castFrozenMin is the smallest frozen 16-bit initializer, in bytes, that
// castFrozen leaves 16-bit.
const castFrozenMin = 4096

// castFrozen keeps m's large frozen 16-bit weights as they are: each is
// renamed and read through a Cast to float32 that takes its old name, so
// that the float32 copy is made by ONNX Runtime, which folds the Cast into
// an initializer of its own when the session opens, rather than held in
// Go as well (a second copy twice the weights' size, and a serialized
// graph that would pass 2 GiB for a model of over 500M parameters).
// Weights that are also graph inputs, and the parameters, are left to be
// converted. It returns the tensors it kept.
func castFrozen(m *graph.Model, params []string) map[*onnxpb.TensorProto]bool {
	trainable := map[string]bool{}
	for _, p := range params {
		trainable[p] = true
	}
	kept := map[*onnxpb.TensorProto]bool{}
	var casts []*onnxpb.NodeProto
	for _, tp := range m.Graph().Initializer {
		if !isHalf(graph.TypeOf(tp)) || trainable[tp.Name] || m.Input(tp.Name) != nil {
			continue
		}
		if graph.NumElements(tp.Dims)*int64(graph.TypeOf(tp).Size()) < castFrozenMin {
			continue
		}
		name := tp.Name
		tp.Name = m.UniqueName(name + "." + graph.TypeOf(tp).String())
		casts = append(casts, &onnxpb.NodeProto{
			OpType: "Cast", Name: m.UniqueName("/peftonnx/upcast/" + name),
			Input: []string{tp.Name}, Output: []string{name},
			Attribute: []*onnxpb.AttributeProto{graph.AttrInt("to", int64(dtype.Float32))},
		})
		m.Graph().ValueInfo = append(m.Graph().ValueInfo, graph.TensorInfo(name, dtype.Float32, tp.Dims))
		kept[tp] = true
	}
	// The Casts go first, so that the node list stays in topological order.
	m.Graph().Node = append(casts, m.Graph().Node...)
	return kept
}

// walkTypes calls elem with every element type that g declares (inputs,
// outputs, value infos, and the type attributes of Cast, the random ops and
// EyeLike), replacing each by what elem returns, and tensor with every
// tensor it holds (initializers and attribute tensors), subgraphs included.
func walkTypes(g *onnxpb.GraphProto, elem func(dtype.Type) dtype.Type, tensor func(*onnxpb.TensorProto)) {
	for _, t := range g.Initializer {
		tensor(t)
	}
	for _, vs := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, v := range vs {
			if tt := v.GetType().GetTensorType(); tt != nil {
				tt.ElemType = int32(elem(dtype.Type(tt.ElemType)))
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
				a.I = int64(elem(dtype.Type(a.I)))
			}
		}
	}
}
