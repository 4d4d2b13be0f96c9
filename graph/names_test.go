package graph_test

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// TestRemovalFreesNames checks that what the Remove functions delete leaves
// the name index, so that HasName and UniqueName answer as on a reloaded
// model (a Clone indexes afresh), while a name that something else still
// uses stays taken.
func TestRemovalFreesNames(t *testing.T) {
	m := chain() // x -> relu -> r -> neg -> y
	w := graph.NewFloat32Tensor("w", dtype.Float32, []int64{1}, []float32{2})
	m.AddInitializer(w)
	m.NewNode("Mul", "mul", []string{"r", "w"}, []string{"z"})
	m.AddOutput(graph.SymbolicTensorInfo("z", dtype.Float32, []graph.Dim{graph.DimParam("n")}))
	m.AddInitializer(graph.NewFloat32Tensor("s", dtype.Float32, []int64{1}, []float32{3}))
	m.AddInput(graph.SymbolicTensorInfo("s", dtype.Float32, []graph.Dim{graph.DimValue(1)}))
	reserved := m.UniqueName("p")
	all := []string{"x", "r", "y", "relu", "neg", "w", "mul", "z", "s", reserved}
	like := func(what string) {
		t.Helper()
		fresh := m.Clone()
		for _, name := range all {
			if name == reserved {
				continue // reserved by UniqueName, unknown to a reload
			}
			if got, want := m.HasName(name), fresh.HasName(name); got != want {
				t.Errorf("%s: HasName(%q) = %v, reloaded %v", what, name, got, want)
			}
		}
	}
	like("built")
	for _, name := range all {
		if !m.HasName(name) {
			t.Fatalf("HasName(%q) false before any removal", name)
		}
	}

	// z stays while it is a graph output; the node's name goes at once.
	m.RemoveNodes(m.NodeByName("mul"))
	if !m.HasName("z") || m.HasName("mul") {
		t.Errorf("after RemoveNodes(mul): HasName(z) %v (a graph output), HasName(mul) %v", m.HasName("z"), m.HasName("mul"))
	}
	m.RemoveOutput("z")
	like("mul and z removed")
	if m.RemoveInitializer("w"); m.HasName("w") {
		t.Errorf("removed initializer w is still taken")
	}

	// s stays while it is a graph input, and goes with it.
	m.RemoveInitializer("s")
	if !m.HasName("s") {
		t.Errorf("s went with its initializer while a graph input has it")
	}
	m.RemoveInput("s")
	if m.HasName("s") {
		t.Errorf("s is taken after its initializer and input went")
	}

	// r stays while neg reads it, and goes once nothing does.
	m.RemoveNodes(m.NodeByName("relu"))
	if !m.HasName("r") || m.HasName("relu") {
		t.Errorf("after RemoveNodes(relu): HasName(r) %v (neg reads it), HasName(relu) %v", m.HasName("r"), m.HasName("relu"))
	}
	m.ReplaceUses("r", "x")
	if m.HasName("r") || !m.HasName("x") {
		t.Errorf("after ReplaceUses(r, x): HasName(r) %v, HasName(x) %v", m.HasName("r"), m.HasName("x"))
	}
	like("relu removed")
	if !m.HasName(reserved) || m.UniqueName("p") == reserved {
		t.Errorf("the reservation %q went with removals of other names", reserved)
	}
	for _, name := range []string{"z", "mul", "w", "s", "r", "relu"} {
		if got := m.UniqueName(name); got != name {
			t.Errorf("UniqueName(%q) = %q: the removed name is not free again", name, got)
		}
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
}
