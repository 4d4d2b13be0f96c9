package runtime_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
	"google.golang.org/protobuf/proto"
)

// requireORT skips the test when the ONNX Runtime library cannot be found.
func requireORT(t testing.TB) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// sharedModel returns the path of a model under ../shared/models beside the
// project's root, or skips the test when that folder is absent.
func sharedModel(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "models", filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared model not available: %v", err)
	}
	return p
}

// dim is a dimension of a declared shape: an int64 size, or a string that
// names a dynamic dimension.
type dim = any

// tensorInfo declares a tensor value; dims nil declares a scalar.
func tensorInfo(name string, dt dtype.Type, dims ...dim) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{}}
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{
				Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		case string:
			shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{
				Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d}})
		default:
			panic("bad dim")
		}
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dt), Shape: shape}}}}
}

// unshapedInfo declares a tensor value with no shape at all.
func unshapedInfo(name string, dt dtype.Type) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dt)}}}}
}

func node(op string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: op, Input: in, Output: out, Attribute: attrs}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}
}

// marshalModel wraps g in a model of the given IR version and opset.
func marshalModel(t testing.TB, g *onnxpb.GraphProto, ir, opset int64) []byte {
	t.Helper()
	if g.Name == "" {
		g.Name = "test"
	}
	m := &onnxpb.ModelProto{
		IrVersion:    ir,
		ProducerName: "peftonnx runtime tests",
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Version: opset}},
		Graph:        g,
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// matMulAddModel computes y = MatMul(x, w) with x [batch,3] and w [3,2],
// and z = Add(x, x), in element type dt.
func matMulAddModel(t testing.TB, dt dtype.Type) []byte {
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{
			tensorInfo("x", dt, "batch", 3),
			tensorInfo("w", dt, 3, 2),
		},
		Output: []*onnxpb.ValueInfoProto{
			tensorInfo("y", dt, "batch", 2),
			tensorInfo("z", dt, "batch", 3),
		},
		Node: []*onnxpb.NodeProto{
			node("MatMul", []string{"x", "w"}, []string{"y"}),
			node("Add", []string{"x", "x"}, []string{"z"}),
		},
	}
	return marshalModel(t, g, 8, 17)
}

// addModel computes y = x + x for x float32 [1, n], with static shapes.
func addModel(t testing.TB, n int) []byte {
	g := &onnxpb.GraphProto{
		Input:  []*onnxpb.ValueInfoProto{tensorInfo("x", dtype.Float32, 1, n)},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, 1, n)},
		Node:   []*onnxpb.NodeProto{node("Add", []string{"x", "x"}, []string{"y"})},
	}
	return marshalModel(t, g, 8, 17)
}

func mustSession(t testing.TB, b []byte, opts ...rt.Option) *rt.Session {
	t.Helper()
	s, err := rt.NewSessionFromBytes(b, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
