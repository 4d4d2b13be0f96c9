package graph

import "github.com/peftonnx/peftonnx/graph/onnxpb"

// AttrInt returns an INT attribute.
func AttrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}
}

// AttrFloat returns a FLOAT attribute.
func AttrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}
}

// AttrInts returns an INTS attribute.
func AttrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
}

// AttrFloats returns a FLOATS attribute.
func AttrFloats(name string, v ...float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOATS, Floats: v}
}

// AttrString returns a STRING attribute.
func AttrString(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}
}

// AttrTensor returns a TENSOR attribute.
func AttrTensor(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_TENSOR, T: t}
}

// Attr returns n's attribute called name, or nil.
func Attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.Attribute {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// IntAttr returns n's INT attribute name, or def when it is absent.
func IntAttr(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := Attr(n, name); a != nil {
		return a.I
	}
	return def
}

// FloatAttr returns n's FLOAT attribute name, or def when it is absent.
func FloatAttr(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := Attr(n, name); a != nil {
		return a.F
	}
	return def
}

// IntsAttr returns n's INTS attribute name, or nil when it is absent.
func IntsAttr(n *onnxpb.NodeProto, name string) []int64 {
	if a := Attr(n, name); a != nil {
		return a.Ints
	}
	return nil
}

// StringAttr returns n's STRING attribute name, or def when it is absent.
func StringAttr(n *onnxpb.NodeProto, name, def string) string {
	if a := Attr(n, name); a != nil {
		return string(a.S)
	}
	return def
}

// SetAttr sets or replaces an attribute of n.
func SetAttr(n *onnxpb.NodeProto, a *onnxpb.AttributeProto) {
	for i, x := range n.Attribute {
		if x.Name == a.Name {
			n.Attribute[i] = a
			return
		}
	}
	n.Attribute = append(n.Attribute, a)
}
