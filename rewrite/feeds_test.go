package rewrite

import (
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// randomAdapter makes an adapter of rank r for sites, with random A and B.
func randomAdapter(sites []Site, r int, alpha float64, rslora bool, seed uint64) *adapter.Adapter {
	rng := rand.New(rand.NewPCG(seed, 13))
	var targets []string
	for _, s := range sites {
		targets = append(targets, s.Module)
	}
	cfg := config(r, alpha, targets...)
	cfg.UseRSLoRA = rslora
	ad := adapter.NewLoRA(cfg)
	for _, s := range sites {
		a := adapter.Zeros(s.AShape(int64(r))...)
		b := adapter.Zeros(s.BShape(int64(r))...)
		for i := range a.Data {
			a.Data[i] = float32(rng.NormFloat64() * 0.3)
		}
		for i := range b.Data {
			b.Data[i] = float32(rng.NormFloat64() * 0.3)
		}
		ad.Weights[s.Module] = adapter.LoRAWeights{A: a, B: b}
	}
	return ad
}

// rtTensors converts adapter tensors to runtime tensors.
func rtTensors(t *testing.T, in map[string]*adapter.Tensor) map[string]*rt.Tensor {
	t.Helper()
	out := map[string]*rt.Tensor{}
	for name, v := range in {
		var x *rt.Tensor
		var err error
		switch v.DType {
		case dtype.Float16:
			x, err = rt.NewFloat16FromFloat32(v.Shape, v.Data)
		default:
			x, err = rt.NewFloat32(v.Shape, v.Data)
		}
		if err != nil {
			t.Fatal(err)
		}
		out[name] = x
	}
	return out
}

// TestAsInputs runs one session of a model whose LoRA factors are inputs:
// fed nothing it is the base model, fed an adapter of rank 4 or 8 it
// matches that adapter's merged model, and fed nothing again it is the base
// once more. Float16 factors are the case that crashed ONNX Runtime 1.24
// at its default optimization level.
func TestAsInputs(t *testing.T) {
	for _, tc := range []struct {
		tm   testModel
		elem dtype.Type
	}{
		{builtModels[2], dtype.Float32},
		{builtModels[1], dtype.Float32},
		{realModels[0], dtype.Float32},
		{builtModels[1], dtype.Float16},
		{builtModels[2], dtype.Float16},
		{realModels[2], dtype.Float16},
	} {
		tm := tc.tm
		t.Run(tm.name+"/"+tc.elem.String(), func(t *testing.T) {
			base := tm.load(t)
			m := base.Clone()
			cfg := config(8, 8, ".*(c_attn|c_proj|q_proj|v_proj|q_lin|v_lin|classifier)")
			cfg.DType = tc.elem
			sites, sum, err := InjectLoRA(m, cfg, AsInputs())
			if err != nil {
				t.Fatal(err)
			}
			if sum.TrainableParams != 0 {
				t.Errorf("rank-0 defaults count %d trainable params, want 0", sum.TrainableParams)
			}
			for _, s := range sites {
				if in := m.Input(s.A); in == nil {
					t.Fatalf("A of %s is not a graph input", s.Module)
				}
				if want, _ := branchType(tc.elem); s.DType != want {
					t.Fatalf("A of %s has element type %s, want %s", s.Module, s.DType, tc.elem)
				}
			}
			ad1 := randomAdapter(sites, 4, 8, false, 1)
			ad2 := randomAdapter(sites[:len(sites)/2], 8, 16, true, 2) // only some modules

			s := session(t, m)
			feeds := feedsFor(t, s, 2, 3, tm.past, 9)
			baseSession := session(t, base)
			wantBase := run(t, baseSession, feeds)
			mergedOut := func(ad *adapter.Adapter) map[string]*rt.Tensor {
				mm := base.Clone()
				if err := MergeAdapter(mm, ad); err != nil {
					t.Fatal(err)
				}
				return run(t, session(t, mm), feeds)
			}
			steps := []struct {
				name string
				ad   *adapter.Adapter
				want map[string]*rt.Tensor
			}{
				{"base", nil, wantBase},
				{"adapter r=4", ad1, mergedOut(ad1)},
				{"adapter r=8", ad2, mergedOut(ad2)},
				{"base again", nil, wantBase},
			}
			for _, step := range steps {
				in := maps.Clone(feeds)
				if step.ad != nil {
					f, err := Feeds(m, step.ad)
					if err != nil {
						t.Fatal(err)
					}
					maps.Copy(in, rtTensors(t, f))
				}
				got := run(t, s, in)
				tol := 1e-6
				if step.ad != nil {
					tol = tm.tol
					if tc.elem == dtype.Float16 {
						tol = max(tol, 2e-2) // the branch computes in float16
					}
				}
				if d, where := maxRelDiff(t, got, step.want); d > tol {
					t.Errorf("%s: output %q differs by %g", step.name, where, d)
				}
			}
			if d, _ := maxRelDiff(t, mergedOut(ad1), wantBase); d < 1e-3 {
				t.Errorf("adapter 1 changes the outputs by only %g", d)
			}
		})
	}
}

// TestAsInputsMergeRestoresBase checks that Merge of an adapters-as-inputs
// model, whose defaults are rank 0, gives back the base model.
func TestAsInputsMergeRestoresBase(t *testing.T) {
	base := builtModels[2].load(t)
	m := base.Clone()
	if _, _, err := InjectLoRA(m, config(4, 8, ".*c_attn"), AsInputs()); err != nil {
		t.Fatal(err)
	}
	if _, err := ExtractAdapter(m); err == nil || !strings.Contains(err.Error(), "graph inputs") {
		t.Errorf("ExtractAdapter of an as-inputs model: got %v, want an error about graph inputs", err)
	}
	if err := Merge(m); err != nil {
		t.Fatal(err)
	}
	a, b := graphBytes(t, m), graphBytes(t, base)
	if a != b {
		t.Errorf("merged as-inputs model differs from the base")
	}
}

// graphBytes returns m serialized, for comparison.
func graphBytes(t *testing.T, m *graph.Model) string {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAsInputsFused feeds a fused-projection layer whose factors are
// inputs: rank 0 (nothing fed) and rank 3, against MergeAdapter.
func TestAsInputsFused(t *testing.T) {
	tc := layerCases[7]
	base, _, _ := layerModel(t, tc, newRand(1))
	ad := layerAdapter(tc, newRand(2))
	m := base.Clone()
	if _, _, err := InjectLoRA(m, *ad.LoRA, AsInputs()); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, graph.NumElements(tc.xShape))
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	xt, err := rt.NewFloat32(tc.xShape, x)
	if err != nil {
		t.Fatal(err)
	}
	feeds := map[string]*rt.Tensor{"x": xt}
	s := session(t, m)
	if d, _ := maxRelDiff(t, run(t, s, feeds), run(t, session(t, base), feeds)); d != 0 {
		t.Errorf("fed nothing: differs from the base by %g", d)
	}
	f, err := Feeds(m, ad)
	if err != nil {
		t.Fatal(err)
	}
	in := maps.Clone(feeds)
	maps.Copy(in, rtTensors(t, f))
	merged := base.Clone()
	if err := MergeAdapter(merged, ad); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, run(t, s, in), run(t, session(t, merged), feeds)); d > 1e-5 {
		t.Errorf("fed the adapter: output %q differs from the merged model by %g", where, d)
	}
}
