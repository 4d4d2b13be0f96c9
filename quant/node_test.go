package quant_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
)

func TestBuilderNames(t *testing.T) {
	got := quant.BuilderNames("model.layers.0.attn.q_proj.MatMul.weight", 4)
	want := quant.TensorNames{
		B:          "model.layers.0.attn.q_proj.MatMul.weight_Q4",
		Scales:     "model.layers.0.attn.q_proj.MatMul.weight_scales",
		ZeroPoints: "model.layers.0.attn.q_proj.MatMul.weight_zero_points",
		GIdx:       "model.layers.0.attn.q_proj.MatMul.weight_g_idx",
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := quant.BuilderNodeName("/model/layers.0/attn/q_proj/MatMul", 4); got != "/model/layers.0/attn/q_proj/MatMul_Q4" {
		t.Errorf("got node name %q", got)
	}
	if got := quant.BuilderNodeName("", 8); got != "" {
		t.Errorf("an unnamed node got name %q, want none", got)
	}
}

// TestReadNode checks that a weight written with Tensors and Node reads
// back equal, in the spec's shapes and in ONNX Runtime's flat ones.
func TestReadNode(t *testing.T) {
	const k, n = 70, 5
	values := normals(k*n, 1, 4)
	withFloatZP, _ := quant.Quantize(values, k, n, quant.Options{BlockSize: 16})
	withFloatZP.FloatZeroPoints = []float32{1, 2, 3, 4, 5.5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	withFloatZP.ZeroPoints = nil
	withGIdx, _ := quant.Quantize(values, k, n, quant.Options{BlockSize: 16, Symmetric: true})
	withGIdx.GIdx = make([]int32, k)
	for i := range withGIdx.GIdx {
		withGIdx.GIdx[i] = int32(4 - i/16)
	}
	for _, test := range []struct {
		name string
		o    quant.Options
		w    *quant.Weight
	}{
		{name: "asymmetric", o: quant.Options{BlockSize: 32}},
		{name: "symmetric float16", o: quant.Options{BlockSize: 16, Symmetric: true, ScaleType: dtype.Float16}},
		{name: "8 bits", o: quant.Options{Bits: 8, BlockSize: 64}},
		{name: "2 bits", o: quant.Options{Bits: 2, BlockSize: 16}},
		{name: "float zero points", w: withFloatZP},
		{name: "g_idx", w: withGIdx},
	} {
		w := test.w
		if w == nil {
			var err error
			if w, err = quant.Quantize(values, k, n, test.o); err != nil {
				t.Fatal(err)
			}
		}
		for _, flat := range []bool{false, true} {
			m := (nbitsCase{w: w, flat: flat, level: 4}).model(t)
			node := m.Graph().Node[0]
			got, err := quant.ReadNode(m, node)
			if err != nil {
				t.Errorf("%s (flat %v): %v", test.name, flat, err)
				continue
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s (flat %v): read back %+v, want %+v", test.name, flat, got.Layout, w.Layout)
			}
			if quant.AccuracyLevelOf(node) != 4 {
				t.Errorf("%s: accuracy level %d, want 4", test.name, quant.AccuracyLevelOf(node))
			}
		}
	}
}

func TestNodeInputs(t *testing.T) {
	sym, _ := quant.Quantize(normals(32*2, 1, 1), 32, 2, quant.Options{Symmetric: true})
	asym, _ := quant.Quantize(normals(32*2, 1, 1), 32, 2, quant.Options{})
	names := quant.BuilderNames("w", 4)
	for _, test := range []struct {
		w    *quant.Weight
		bias string
		want []string
	}{
		{sym, "", []string{"x", "w_Q4", "w_scales"}},
		{asym, "", []string{"x", "w_Q4", "w_scales", "w_zero_points"}},
		{sym, "b", []string{"x", "w_Q4", "w_scales", "", "", "b"}},
	} {
		node, err := test.w.Node(names, quant.NodeOptions{Name: "n", A: "x", Y: "y", Bias: test.bias})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(node.Input, test.want) {
			t.Errorf("got inputs %q, want %q", node.Input, test.want)
		}
		if graph.Attr(node, "accuracy_level") != nil {
			t.Errorf("accuracy level 0 wrote the attribute")
		}
	}
	if _, err := sym.Node(names, quant.NodeOptions{AccuracyLevel: 5}); err == nil || !strings.Contains(err.Error(), "accuracy level 5") {
		t.Errorf("accuracy level 5: got %v", err)
	}
}

func TestReadNodeErrors(t *testing.T) {
	w, _ := quant.Quantize(normals(64*3, 1, 2), 64, 3, quant.Options{BlockSize: 32})
	for _, test := range []struct {
		reason string
		edit   func(m *graph.Model, n *onnxpb.NodeProto)
		want   string
	}{
		{"not MatMulNBits", func(m *graph.Model, n *onnxpb.NodeProto) { n.OpType = "MatMul" }, `node "/l/MatMul_Q4" is com.microsoft:MatMul, not com.microsoft:MatMulNBits`},
		{"bad block size", func(m *graph.Model, n *onnxpb.NodeProto) { graph.SetAttr(n, graph.AttrInt("block_size", 24)) }, "block size 24"},
		{"bad bits", func(m *graph.Model, n *onnxpb.NodeProto) { graph.SetAttr(n, graph.AttrInt("bits", 3)) }, "3 bits"},
		{"B not an initializer", func(m *graph.Model, n *onnxpb.NodeProto) { m.RemoveInitializer("w_Q4") }, `B "w_Q4" is not a constant initializer`},
		{"B with another shape", func(m *graph.Model, n *onnxpb.NodeProto) { m.Initializer("w_Q4").Dims = []int64{3, 32} }, `B "w_Q4" has type uint8 and shape [3 32], want [[3 2 16]]`},
		{"scales with another shape", func(m *graph.Model, n *onnxpb.NodeProto) { m.Initializer("w_scales").Dims = []int64{2, 3} }, `scales "w_scales" has type float32 and shape [2 3]`},
		{"zero points of another type", func(m *graph.Model, n *onnxpb.NodeProto) {
			m.AddInitializer(graph.NewFloat32Tensor("w_zero_points", dtype.Float16, []int64{3, 2}, make([]float32, 6)))
		}, "want uint8 or the scales' type float32"},
		{"no scales", func(m *graph.Model, n *onnxpb.NodeProto) { n.Input = n.Input[:2] }, "has no scales input"},
	} {
		m := (nbitsCase{w: w}).model(t)
		n := m.Graph().Node[0]
		test.edit(m, n)
		m.Reindex()
		_, err := quant.ReadNode(m, n)
		if err == nil || !strings.HasPrefix(err.Error(), "quant: ") || !strings.Contains(err.Error(), test.want) {
			t.Errorf("%s: got %v, want an error containing %q", test.reason, err, test.want)
		}
	}
}
