package demo

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// TestDemo runs the embedded default end to end and checks what it
// reports: the loss falls far, the merged model keeps the base's nodes,
// agrees with the adapted one, and predicts the task.
func TestDemo(t *testing.T) {
	c := Default()
	c.OutDir = t.TempDir()
	r, err := Run(context.Background(), io.Discard, c)
	if err != nil {
		t.Fatal(err)
	}
	if r.LossAfter > 0.1*r.LossBefore {
		t.Errorf("eval loss: got %.4f -> %.4f, want a fall of 10x or more", r.LossBefore, r.LossAfter)
	}
	if r.AccuracyBefore > 0.2 || r.AccuracyAfter < 0.95 {
		t.Errorf("accuracy: got base %.2f merged %.2f, want <= 0.2 and >= 0.95", r.AccuracyBefore, r.AccuracyAfter)
	}
	if r.MergedNodes != r.BaseNodes {
		t.Errorf("merged nodes: got %d want %d", r.MergedNodes, r.BaseNodes)
	}
	if r.FrozenUnchanged == 0 || r.Sites != 15 {
		t.Errorf("got %d frozen weights checked and %d sites, want > 0 and 15", r.FrozenUnchanged, r.Sites)
	}
	for _, f := range []string{"base.onnx", "adapted.onnx", "merged.onnx"} {
		m, err := graph.Load(filepath.Join(c.OutDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	ad, err := adapter.LoadDir(filepath.Join(c.OutDir, "adapter"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ad.Modules()) != 15 {
		t.Errorf("saved adapter modules: got %d want 15", len(ad.Modules()))
	}
	if _, err := os.Stat(filepath.Join(c.OutDir, "adapter", adapter.HFWeightsFile)); err != nil {
		t.Error(err)
	}
}
