package train

import (
	"testing"

	"github.com/peftonnx/peftonnx/models"
)

// TestRaiseOpset checks that only a graph of ops that mean the same at
// opset 11 is raised to it: the IR-3 MLP (opset 8) is, and the same with a
// Slice, whose starts and ends moved from attributes to inputs at opset
// 10, is not.
func TestRaiseOpset(t *testing.T) {
	m, err := models.IR3MLP(1)
	if err != nil {
		t.Fatal(err)
	}
	sliced := m.Clone()
	if !raiseOpset(m) || m.Opset("") != trainingOpset {
		t.Errorf("the IR-3 MLP was not raised: opset %d", m.Opset(""))
	}
	sliced.NewNode("Slice", "/slice", []string{"y"}, []string{"y_sliced"})
	if raiseOpset(sliced) || sliced.Opset("") != 8 {
		t.Errorf("a graph with Slice was raised to opset %d", sliced.Opset(""))
	}
}
