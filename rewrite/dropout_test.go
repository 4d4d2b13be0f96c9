package rewrite

import (
	"maps"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestDropout checks LoRA dropout on a 1×1 layer with W = 0 and
// A = B = 1, so that y is the dropped-out x: in training every value is 0
// or x/(1-p), about a fraction p of them 0; outside training y = x. Opset
// 17 uses the Dropout node, opset 11 the composite.
func TestDropout(t *testing.T) {
	const rows, p = 4000, 0.25
	for _, opset := range []int64{11, 17} {
		g := &onnxpb.GraphProto{
			Name:        "dropout",
			Node:        []*onnxpb.NodeProto{{OpType: "MatMul", Name: "/proj/MatMul", Input: []string{"x", "proj.weight"}, Output: []string{"y"}}},
			Initializer: []*onnxpb.TensorProto{graph.NewFloat32Tensor("proj.weight", dtype.Float32, []int64{1, 1}, []float32{0})},
			Input:       []*onnxpb.ValueInfoProto{graph.TensorInfo("x", dtype.Float32, []int64{rows, 1})},
			Output:      []*onnxpb.ValueInfoProto{graph.TensorInfo("y", dtype.Float32, []int64{rows, 1})},
		}
		m := graph.New(&onnxpb.ModelProto{IrVersion: 7, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: opset}}, Graph: g}, "")
		cfg := config(1, 1, "proj")
		cfg.Dropout = p
		ad := adapter.NewLoRA(cfg)
		ad.Weights["proj"] = adapter.LoRAWeights{A: adapter.NewTensor([]int64{1, 1}, []float32{1}), B: adapter.NewTensor([]int64{1, 1}, []float32{1})}
		if _, _, err := ApplyLoRA(m, ad); err != nil {
			t.Fatal(err)
		}
		s := session(t, m)
		ones := make([]float32, rows)
		for i := range ones {
			ones[i] = 3
		}
		x, _ := rt.NewFloat32([]int64{rows, 1}, ones)
		train, _ := rt.NewBool(nil, []bool{true})
		feeds := map[string]*rt.Tensor{"x": x}
		for _, v := range run(t, s, feeds)["y"].Float32() {
			if v != 3 {
				t.Fatalf("opset %d, inference: got %v want 3", opset, v)
			}
		}
		in := maps.Clone(feeds)
		in[TrainingModeInput] = train
		zeros := 0
		for _, v := range run(t, s, in)["y"].Float32() {
			switch v {
			case 0:
				zeros++
			case 3 / (1 - p):
			default:
				t.Fatalf("opset %d, training: got %v want 0 or %v", opset, v, 3/(1-p))
			}
		}
		if frac := float64(zeros) / rows; frac < p-0.05 || frac > p+0.05 {
			t.Errorf("opset %d, training: %.3f of the values dropped, want about %v", opset, frac, p)
		}
	}
}
