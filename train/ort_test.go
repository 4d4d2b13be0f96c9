package train

import (
	"errors"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
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

// irVersionFor returns an IR version that ONNX Runtime accepts with the
// given default opset.
func irVersionFor(opset int64) int64 {
	switch {
	case opset <= 11:
		return 6
	case opset <= 15:
		return 8
	}
	return 9
}

// identityModel returns a model at opset whose input x (elemType, dims) is
// copied by an Identity node to the declared output out.
func identityModel(opset int64, elemType dtype.Type, out string, dims ...graph.Dim) *graph.Model {
	m := graph.New(&onnxpb.ModelProto{
		IrVersion:   irVersionFor(opset),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: "", Version: opset}},
		Graph:       &onnxpb.GraphProto{Name: "identity"},
	}, "")
	m.AddInput(graph.SymbolicTensorInfo("x", elemType, dims))
	m.NewNode("Identity", "identity", []string{"x"}, []string{out})
	m.AddOutput(graph.SymbolicTensorInfo(out, elemType, dims))
	return m
}

// runModel runs m once in ONNX Runtime and returns the named outputs.
func runModel(t *testing.T, m *graph.Model, inputs map[string]*rt.Tensor, outputs ...string) map[string]*rt.Tensor {
	t.Helper()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(inputs, outputs)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustTensor(t *testing.T) func(*rt.Tensor, error) *rt.Tensor {
	return func(x *rt.Tensor, err error) *rt.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
}
