package rewrite

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// runXY runs m on its float32 input x of the given shape and returns its
// output y.
func runXY(t testing.TB, m *graph.Model, shape []int64, x []float32) []float32 {
	t.Helper()
	xt, err := rt.NewFloat32(shape, x)
	if err != nil {
		t.Fatal(err)
	}
	return run(t, session(t, m), map[string]*rt.Tensor{"x": xt})["y"].ToFloat32()
}

// TestIR3InitializersAsInputs adapts a model whose weights are graph
// inputs with initializers, as IR-3 exports list them, at their opset 8:
// both layers are found, dropout (opset 9) is refused plainly, a fresh
// injection without it computes the base's outputs, the adapted model
// runs, and Merge matches it.
func TestIR3InitializersAsInputs(t *testing.T) {
	base, err := models.IR3MLP(2)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := FindLayers(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Module != "fc1" || ls[1].Module != "fc2" {
		t.Fatalf("layers: %v, want fc1 and fc2", moduleList(ls))
	}
	rng := rand.New(rand.NewPCG(1, 1))
	x := make([]float32, 2*4)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	runMLP := func(m *graph.Model) []float32 { return runXY(t, m, []int64{2, 4}, x) }
	baseOut := runMLP(base)
	// Opset 8 takes branches without dropout; dropout's ops need 9.
	withDropout := config(2, 4, "fc.*")
	withDropout.Dropout = 0.1
	if _, _, err := InjectLoRA(base.Clone(), withDropout); err == nil || !strings.Contains(err.Error(), "opset 9 or newer with dropout (7 without)") {
		t.Errorf("dropout on opset 8: %v, want a refusal naming both opsets", err)
	}
	m := base.Clone()
	sites, _, err := InjectLoRA(m, config(2, 4, "fc.*"), WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("adapted IR-3 model does not validate: %v", err)
	}
	if d := maxDiff(runMLP(m), baseOut); d != 0 {
		t.Fatalf("fresh injection changed y by %g", d)
	}
	randomizeB(t, m, sites, 3, 0.5)
	adapted := runMLP(m)
	if d := maxDiff(adapted, baseOut); d < 1e-2 {
		t.Fatalf("random B changed y by only %g", d)
	}
	if err := Merge(m); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runMLP(m), adapted); d > 1e-5 {
		t.Errorf("merged differs from adapted by %g", d)
	}
	if len(m.Graph().Input) != len(base.Graph().Input) || len(m.Graph().Initializer) != len(base.Graph().Initializer) {
		t.Errorf("merged model has %d inputs and %d initializers, the base %d and %d", len(m.Graph().Input), len(m.Graph().Initializer), len(base.Graph().Input), len(base.Graph().Initializer))
	}
}
