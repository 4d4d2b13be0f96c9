package train

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// The shared arena is for steps whose fed parameters are small beside the
// frozen weights (LoRA, prefix, QLoRA), not for full fine-tuning, whose
// parameters are all fed (see NewSession).
func TestPEFTArena(t *testing.T) {
	model := func(fedFloats, frozenFloats int64) *graph.Model {
		m := graph.New(&onnxpb.ModelProto{Graph: &onnxpb.GraphProto{}}, "")
		m.AddInput(graph.TensorInfo("input_ids", dtype.Int64, []int64{-1, -1}))
		m.AddInput(graph.TensorInfo("hidden", dtype.Float32, []int64{-1, 16}))
		m.AddInput(graph.TensorInfo("lora_A", dtype.Float32, []int64{fedFloats}))
		m.AddInitializer(graph.NewFloat32Tensor("weight", dtype.Float32, []int64{frozenFloats}, make([]float32, frozenFloats)))
		return m
	}
	for _, tc := range []struct {
		fed, frozen int64
		want        bool
	}{{8, 1000, true}, {100, 1000, true}, {125, 1000, false}, {1000, 8, false}} {
		if got := peftArena(model(tc.fed, tc.frozen)); got != tc.want {
			t.Errorf("%d fed, %d frozen floats: shared arena %v, want %v", tc.fed, tc.frozen, got, tc.want)
		}
	}
}
