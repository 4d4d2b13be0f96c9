package train

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
)

// TestTrainerExternalWeights trains the same LoRA twice for a few steps:
// once on a model held in memory, once on the same model loaded from a
// file whose weights are external data, which NewSession leaves for ONNX
// Runtime to read from the model's folder. Both runs must take exactly
// the same steps, and the model files must be untouched.
func TestTrainerExternalWeights(t *testing.T) {
	requireORT(t)
	build := func() *graph.Model {
		m, err := models.GPT2(models.GPT2Tiny())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := build().Save(path, graph.SaveOptions{ExternalData: true, Threshold: 64}); err != nil {
		t.Fatal(err)
	}
	loaded, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	external := 0
	for _, init := range loaded.Graph().Initializer {
		if init.DataLocation == onnxpb.TensorProto_EXTERNAL {
			external++
		}
	}
	if external < 10 {
		t.Fatalf("only %d external tensors in %s: the test needs the weights outside the model file", external, path)
	}

	run := func(m *graph.Model) ([]float64, map[string][]float32) {
		m, params := injectLoRA(t, m, ".*c_attn", ".*c_fc")
		opts := testOptions()
		opts.Steps = 4
		opts.Eval = patternData(4, 8, 32, 7)
		tr, losses := trainSteps(t, m, params, patternData(16, 8, 32, 1), opts)
		ev, err := tr.Evaluate(opts.Eval)
		if err != nil {
			t.Fatal(err)
		}
		return append(losses, ev.Loss), paramValues(tr)
	}
	wantLoss, wantW := run(build())
	same := func(how string, gotLoss []float64, gotW map[string][]float32) {
		t.Helper()
		for i := range wantLoss {
			if gotLoss[i] != wantLoss[i] {
				t.Errorf("loss %d: %s %v, in memory %v", i, how, gotLoss[i], wantLoss[i])
			}
		}
		if len(gotW) != len(wantW) {
			t.Fatalf("%s: %d parameters, in memory %d", how, len(gotW), len(wantW))
		}
		for name, want := range wantW {
			if !slices.Equal(gotW[name], want) {
				t.Fatalf("parameter %s: %s differs from in memory", name, how)
			}
		}
	}
	gotLoss, gotW := run(loaded)
	same("external weights", gotLoss, gotW)
	t.Logf("losses %v (last is eval)", gotLoss)

	// A graph over the protobuf limit is saved to a temporary folder and
	// opened from there: lower the limit to see that path give the same
	// steps, and leave nothing behind.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	defer func(v int64) { spillAbove = v }(spillAbove)
	spillAbove = 1024
	gotLoss, gotW = run(build())
	same("spilled to a temporary folder", gotLoss, gotW)
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the temporary folder holds %d entries after the sessions opened, want none", len(left))
	}
	// Where the temporary folder cannot be made, the error says so.
	t.Setenv("TMPDIR", filepath.Join(tmp, "missing"))
	m, params := injectLoRA(t, build(), ".*c_attn")
	_, err = NewTrainer(m, params, patternData(4, 8, 32, 1), testOptions())
	if err == nil || !strings.Contains(err.Error(), "saving the training graph") {
		t.Errorf("NewTrainer with no room for the spilled graph: got %v, want an error about saving it", err)
	}
}

// TestNewSessionExternalWithoutFolder checks the error for a model whose
// weights are external data but which says nothing of where they are.
func TestNewSessionExternalWithoutFolder(t *testing.T) {
	requireORT(t)
	m := identityModel(13, dtype.Float32, "y", graph.DimValue(2))
	w := graph.NewFloat32Tensor("w", dtype.Float32, []int64{2}, []float32{1, 2})
	w.RawData, w.FloatData = nil, nil
	w.DataLocation = onnxpb.TensorProto_EXTERNAL
	w.ExternalData = []*onnxpb.StringStringEntryProto{{Key: "location", Value: "w.bin"}}
	m.Graph().Initializer = append(m.Graph().Initializer, w)
	m.Dir = ""
	_, err := NewSession(m)
	if err == nil {
		t.Fatal("NewSession accepted external data with no folder")
	}
	t.Log(err)
}
