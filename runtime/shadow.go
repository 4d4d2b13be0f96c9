package runtime

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Shadow outputs.
//
// onnxruntime_go v1.27 can hand back an output that ONNX Runtime allocated
// only when it is a typed tensor of rank 1 or more: a float16 or bfloat16
// output fails with "not enough space", and a scalar fails with "the shape
// has no dimensions". When the output's shape is not known in advance, a
// session cannot allocate it either. For such outputs the session adds two
// small "shadow" outputs to the graph before ONNX Runtime sees it: the
// output flattened to one dimension (cast to float32 first where it is a
// 16-bit float, which is exact), and its shape. The run reads those and
// rebuilds the tensor.
const shadowPrefix = "__peftonnx_runtime/"

// shadowNames returns the names of the two shadow outputs of output y.
func shadowNames(y string) (data, shape string) {
	return shadowPrefix + "flat/" + y, shadowPrefix + "shape/" + y
}

// needsShadow reports whether output v must be read through shadow outputs
// when its shape is not known in advance.
func needsShadow(v ValueInfo) bool {
	return isHalf(v.DType) || len(v.Shape) == 0
}

// canShadow reports whether the shadow nodes for v exist at the model's
// opset: Reshape with a shape input needs opset 5, Cast with an integer
// "to" opset 6, and Cast from bfloat16 opset 13.
func canShadow(v ValueInfo, opset int64) bool {
	switch {
	case opset < 6:
		return false
	case v.DType == dtype.BFloat16:
		return opset >= 13
	}
	return true
}

// shadowPatch returns the bytes to append to a serialized ModelProto so that
// it also has the shadow outputs of ys. Protobuf merges a repeated embedded
// message field, so the appended graph's nodes, initializer and outputs are
// added to the model's own. A Constant node, not an initializer, holds
// the flat shape, so that models before IR version 4 accept it.
func shadowPatch(ys []ValueInfo) []byte {
	flat := shadowPrefix + "flat_shape"
	g := &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{{
		Name: flat, OpType: "Constant", Output: []string{flat},
		Attribute: []*onnxpb.AttributeProto{{
			Name: "value", Type: onnxpb.AttributeProto_TENSOR,
			T: &onnxpb.TensorProto{Dims: []int64{1}, DataType: int32(dtype.Int64), Int64Data: []int64{-1}},
		}},
	}}}
	for _, y := range ys {
		dataName, shapeName := shadowNames(y.Name)
		src := y.Name
		dataType := y.DType
		if isHalf(y.DType) {
			src = shadowPrefix + "float32/" + y.Name
			dataType = dtype.Float32
			g.Node = append(g.Node, &onnxpb.NodeProto{
				Name: shadowPrefix + "cast/" + y.Name, OpType: "Cast",
				Input: []string{y.Name}, Output: []string{src},
				Attribute: []*onnxpb.AttributeProto{{
					Name: "to", Type: onnxpb.AttributeProto_INT, I: int64(dtype.Float32),
				}},
			})
		}
		g.Node = append(g.Node,
			&onnxpb.NodeProto{
				Name: shadowPrefix + "reshape/" + y.Name, OpType: "Reshape",
				Input: []string{src, flat}, Output: []string{dataName},
			},
			&onnxpb.NodeProto{
				Name: shadowPrefix + "shape/" + y.Name, OpType: "Shape",
				Input: []string{y.Name}, Output: []string{shapeName},
			})
		g.Output = append(g.Output, tensorValueInfo(dataName, dataType), tensorValueInfo(shapeName, dtype.Int64))
	}
	b, err := proto.Marshal(g)
	if err != nil {
		panic("runtime: marshalling shadow outputs: " + err.Error())
	}
	patch := protowire.AppendTag(nil, modelGraph, protowire.BytesType)
	return protowire.AppendBytes(patch, b)
}

// tensorValueInfo declares a rank-1 tensor of unknown length.
func tensorValueInfo(name string, elem dtype.Type) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{
		Name: name,
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: int32(elem),
			Shape:    &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{{}}},
		}}},
	}
}
