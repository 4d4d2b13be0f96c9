package autodiff

import (
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// mysteryModel is x [B, 4] → example.org:Mystery → y → Cast to float32 →
// yf → MatMul(yf, W [4, 5]) → z → ReduceSum → loss, at the given opset. declare says where the
// graph declares y's type: "value_info", "output" or "" for nowhere.
func mysteryModel(t *testing.T, opset int64, declare string) *graph.Model {
	t.Helper()
	g := newTestGraph(t, opset, dtype.Float32, declStatic)
	g.m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{graph.DimParam("B"), graph.DimValue(4)}))
	g.m.AddInitializer(graph.NewFloatTensor("W", dtype.Float32, i64s(4, 5), make([]float64, 20)))
	g.m.AddNode(&onnxpb.NodeProto{OpType: "Mystery", Domain: "example.org", Name: "mystery", Input: []string{"x"}, Output: []string{"y"}})
	g.m.AddNode(&onnxpb.NodeProto{OpType: "Cast", Name: "cast", Input: []string{"y"}, Output: []string{"yf"},
		Attribute: []*onnxpb.AttributeProto{graph.AttrInt("to", int64(dtype.Float32))}})
	g.m.AddNode(&onnxpb.NodeProto{OpType: "MatMul", Name: "matmul", Input: []string{"yf", "W"}, Output: []string{"z"}})
	g.m.AddNode(&onnxpb.NodeProto{OpType: "ReduceSum", Name: "loss", Input: []string{"z"}, Output: []string{"loss"},
		Attribute: []*onnxpb.AttributeProto{graph.AttrInt("keepdims", 0)}})
	y := graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{graph.DimParam("B"), graph.DimValue(4)})
	switch declare {
	case "value_info":
		g.m.Graph().ValueInfo = append(g.m.Graph().ValueInfo, y)
	case "output":
		g.m.AddOutput(y)
	}
	g.m.Reindex()
	return g.m
}

// TestInferenceFallsBackToDeclared: the outputs of an op that inference
// does not know take the types the graph declares for them, so that the
// ops after it are inferred; where the graph declares nothing, they stay
// unknown and are listed as undescribed.
func TestInferenceFallsBackToDeclared(t *testing.T) {
	named := func(s string) dim { return dim{sym: "$" + s} }
	cases := []struct {
		declare         string
		wantY, wantZ    shape
		wantElem        dtype.Type
		wantUndescribed []string
	}{
		{"value_info", rankShape(named("B"), known(4)), rankShape(named("B"), known(5)), dtype.Float32, nil},
		{"output", rankShape(named("B"), known(4)), rankShape(named("B"), known(5)), dtype.Float32, nil},
		{"", unknownShape(), unknownShape(), dtype.Undefined, []string{"y"}},
	}
	for _, c := range cases {
		t.Run("declared_in_"+c.declare, func(t *testing.T) {
			m := mysteryModel(t, 17, c.declare)
			f := newInferer(m)
			order, err := m.TopoOrder()
			if err != nil {
				t.Fatal(err)
			}
			f.run(order)
			if got := f.get("y"); got.elem != c.wantElem || !sameOrUnknown(got.shape, c.wantY) {
				t.Errorf("y: got %s %v, want %s %v", got.elem, got.shape, c.wantElem, c.wantY)
			}
			if got := f.get("z").shape; !sameOrUnknown(got, c.wantZ) {
				t.Errorf("z: got %v, want %v", got, c.wantZ)
			}
			if !slices.Equal(f.undescribed, c.wantUndescribed) {
				t.Errorf("undescribed: got %v, want %v", f.undescribed, c.wantUndescribed)
			}
		})
	}
}

// sameOrUnknown is sameShape, with two unknown shapes equal too.
func sameOrUnknown(a, b shape) bool {
	if !a.ok || !b.ok {
		return a.ok == b.ok
	}
	return sameShape(a, b)
}

// TestBuildThroughUndescribedOp: before opset 13, MatMul's rule needs the
// rank of its input, which only the graph's declaration of the unknown
// op's output gives (through the Cast).
func TestBuildThroughUndescribedOp(t *testing.T) {
	for _, declare := range []string{"value_info", "output", ""} {
		_, err := Build(mysteryModel(t, 11, declare), "loss", []string{"W"})
		switch {
		case declare != "" && err != nil:
			t.Errorf("declared in %s: %v", declare, err)
		case declare == "" && (err == nil || !strings.Contains(err.Error(), `the ranks of "yf" and "W" must be known`)):
			t.Errorf("undeclared: got error %v, want one about the unknown rank of y", err)
		}
	}
}

// TestDeclaredMergesWithInferred: for an op that inference knows, what the
// graph declares still fills in what inference left open (a named dim for
// one it could only call unknown).
func TestDeclaredMergesWithInferred(t *testing.T) {
	g := newTestGraph(t, 17, dtype.Float32, declStatic)
	g.m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{graph.DimParam("B"), graph.DimValue(4)}))
	g.m.AddInput(graph.TensorInfo("s", dtype.Int64, []int64{2}))
	g.m.AddNode(&onnxpb.NodeProto{OpType: "Reshape", Name: "reshape", Input: []string{"x", "s"}, Output: []string{"r"}})
	g.m.Graph().ValueInfo = append(g.m.Graph().ValueInfo, graph.SymbolicTensorInfo("r", dtype.Float32, []graph.Dim{graph.DimParam("rows"), graph.DimValue(2)}))
	g.m.Reindex()
	f := newInferer(g.m)
	f.run(g.m.Graph().Node)
	want := rankShape(dim{sym: "$rows"}, known(2))
	if got := f.get("r"); got.elem != dtype.Float32 || !sameShape(got.shape, want) {
		t.Errorf("r: got %s %v, want float32 %v", got.elem, got.shape, want)
	}
}

// TestDefaultDomainSpelledOut: a node whose domain is written "ai.onnx"
// is inferred as one in the default domain.
func TestDefaultDomainSpelledOut(t *testing.T) {
	g := newTestGraph(t, 17, dtype.Float32, declStatic)
	g.m.AddInput(graph.TensorInfo("a", dtype.Float32, []int64{2, 3}))
	g.m.AddInput(graph.TensorInfo("b", dtype.Float32, []int64{3, 4}))
	g.m.AddNode(&onnxpb.NodeProto{OpType: "MatMul", Domain: "ai.onnx", Name: "mm", Input: []string{"a", "b"}, Output: []string{"c"}})
	g.m.Reindex()
	f := newInferer(g.m)
	f.run(g.m.Graph().Node)
	if got, want := f.get("c").shape, rankShape(known(2), known(4)); !sameShape(got, want) {
		t.Errorf("c: got %v, want %v", got, want)
	}
	if len(f.undescribed) != 0 {
		t.Errorf("undescribed: %v", f.undescribed)
	}
}
