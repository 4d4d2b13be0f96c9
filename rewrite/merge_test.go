package rewrite

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// TestMergeMatchesAdapted adapts every linear layer of each model with
// non-zero B, then checks that the merged model computes what the adapted
// one does, and has exactly the base's nodes and initializers.
func TestMergeMatchesAdapted(t *testing.T) {
	for _, tm := range append(append([]testModel(nil), realModels...), builtModels...) {
		t.Run(tm.name, func(t *testing.T) {
			base := tm.load(t)
			baseOut := runModel(t, base, 1, 4, tm.past)
			m := base.Clone()
			cfg := config(4, 8, ".*")
			sites, _, err := InjectLoRA(m, cfg, WithSeed(2))
			if err != nil {
				t.Fatal(err)
			}
			randomizeB(t, m, sites, 5, 0.5)
			adapted := runModel(t, m, 1, 4, tm.past)
			if d, _ := maxRelDiff(t, adapted, baseOut); d < 1e-3 {
				t.Fatalf("random B changed the outputs by only %g: the branches are not wired in", d)
			}
			if err := Merge(m); err != nil {
				t.Fatal(err)
			}
			merged := runModel(t, m, 1, 4, tm.past)
			if d, where := maxRelDiff(t, merged, adapted); d > tm.tol {
				t.Errorf("merged output %q differs from adapted by %g (tolerance %g)", where, d, tm.tol)
			}
			baseNodes, baseInits := names(base)
			gotNodes, gotInits := names(m)
			if len(m.Graph().Node) != len(base.Graph().Node) || !slices.Equal(gotNodes, baseNodes) {
				t.Errorf("merged nodes: got %d want %d, names equal: %v", len(m.Graph().Node), len(base.Graph().Node), slices.Equal(gotNodes, baseNodes))
			}
			if !slices.Equal(gotInits, baseInits) {
				t.Errorf("merged initializers differ from the base's")
			}
			// The metadata gains the merge's fingerprints and nothing else.
			if len(m.Graph().Input) != len(base.Graph().Input) || len(m.Proto.MetadataProps) != len(base.Proto.MetadataProps)+1 {
				t.Errorf("merged model keeps LoRA inputs or metadata")
			}
			if rec, err := readMergeFingerprints(m); err != nil || len(rec.Merges) != len(sites) {
				t.Errorf("merged model records %d fingerprints (%v), want one per site (%d)", len(rec.Merges), err, len(sites))
			}
		})
	}
}

// TestExtractApplyRoundTrip pulls the adapter out of an adapted model,
// applies it to a fresh base, and merges it with MergeAdapter; then
// Unmerge turns the merged model back into an adapted one.
func TestExtractApplyRoundTrip(t *testing.T) {
	for _, tm := range []testModel{realModels[0], realModels[1], builtModels[2], builtModels[3]} {
		t.Run(tm.name, func(t *testing.T) {
			base := tm.load(t)
			m := base.Clone()
			cfg := config(2, 4, ".*(attn|attention).*")
			cfg.TrainableBias = "lora"
			sites, sum, err := InjectLoRA(m, cfg, WithSeed(3))
			if err != nil {
				t.Fatal(err)
			}
			if len(sum.Extra) == 0 {
				t.Errorf("trainable_bias lora marked no bias trainable")
			}
			randomizeB(t, m, sites, 6, 0.5)
			want := runModel(t, m, 2, 3, tm.past)
			ad, err := ExtractAdapter(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(ad.Weights); got == 0 || len(ad.Extra) != len(sum.Extra) {
				t.Fatalf("extracted %d modules and %d extras, want >0 and %d", got, len(ad.Extra), len(sum.Extra))
			}

			applied := base.Clone()
			if _, _, err := ApplyLoRA(applied, ad); err != nil {
				t.Fatal(err)
			}
			if d, where := maxRelDiff(t, runModel(t, applied, 2, 3, tm.past), want); d > 1e-6 {
				t.Errorf("Apply: output %q differs by %g", where, d)
			}

			merged := base.Clone()
			if err := MergeAdapter(merged, ad); err != nil {
				t.Fatal(err)
			}
			if d, where := maxRelDiff(t, runModel(t, merged, 2, 3, tm.past), want); d > tm.tol {
				t.Errorf("MergeAdapter: output %q differs by %g", where, d)
			}

			if _, _, err := Unmerge(merged, ad); err != nil {
				t.Fatal(err)
			}
			if d, where := maxRelDiff(t, runModel(t, merged, 2, 3, tm.past), want); d > tm.tol {
				t.Errorf("Unmerge: output %q differs by %g", where, d)
			}
			if err := Merge(merged); err != nil {
				t.Fatal(err)
			}
			for _, w := range base.Graph().Initializer {
				got, _ := merged.Float32s(merged.Initializer(w.Name))
				orig, _ := base.Float32s(w)
				if graph.TypeOf(w).IsFloat() && len(got) != len(orig) {
					t.Fatalf("initializer %q changed size", w.Name)
				}
			}
		})
	}
}

// TestFP16LlamaSaveLoad adapts q_proj and v_proj of the float16
// onnxruntime-genai LLaMA, merges, saves with external data, loads the
// file back and runs it.
func TestFP16LlamaSaveLoad(t *testing.T) {
	base := realModel(t, "tiny-llama-genai-fp16/model.onnx")
	m := base.Clone()
	sites, _, err := InjectLoRA(m, config(8, 16, ".*(q|v)_proj"), WithSeed(4))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 4 {
		t.Fatalf("sites: got %d want 4 (q and v of 2 layers)", len(sites))
	}
	for _, s := range sites {
		if s.BaseDType != dtype.Float16 || s.DType != dtype.Float32 {
			t.Errorf("site %s: base %s adapter %s, want float16 and float32", s.Module, s.BaseDType, s.DType)
		}
	}
	randomizeB(t, m, sites, 7, 0.5)
	adapted := runModel(t, m, 1, 4, 0)
	if err := Merge(m); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "merged.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	loaded, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	if len(loaded.Graph().Node) != len(base.Graph().Node) {
		t.Errorf("nodes: got %d want %d", len(loaded.Graph().Node), len(base.Graph().Node))
	}
	got := runModel(t, loaded, 1, 4, 0)
	if d, where := maxRelDiff(t, got, adapted); d > 2e-2 {
		t.Errorf("saved merged model: output %q differs from adapted by %g", where, d)
	}
}

// TestRecordSurvivesSave checks that an adapted model saved and loaded
// again still knows its sites: Summarize, ExtractAdapter and Merge work.
func TestRecordSurvivesSave(t *testing.T) {
	base := builtModels[0].load(t)
	m := base.Clone()
	cfg := config(4, 8, ".*(q|v)_proj")
	cfg.Dropout = 0.05
	cfg.RankPattern = map[string]int{"v_proj": 2}
	sites, sum, err := InjectLoRA(m, cfg, WithSeed(9))
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(t, m, sites, 1, 0.5)
	path := filepath.Join(t.TempDir(), "adapted.onnx")
	if err := m.Save(path, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	loaded, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Close()
	again, err := Summarize(loaded)
	if err != nil || again.String() != sum.String() {
		t.Errorf("Summarize after load: got %v, %v want %v", again, err, sum)
	}
	ad, err := ExtractAdapter(loaded)
	if err != nil {
		t.Fatal(err)
	}
	if got := ad.Weights["model.layers.0.self_attn.v_proj"].A.Shape; !slices.Equal(got, []int64{16, 2}) {
		t.Errorf("v_proj A: got %v want [16 2] (rank_pattern)", got)
	}
	want := runModel(t, loaded, 1, 3, 2)
	if err := Merge(loaded); err != nil {
		t.Fatal(err)
	}
	if d, where := maxRelDiff(t, runModel(t, loaded, 1, 3, 2), want); d > 1e-5 {
		t.Errorf("merged after load: output %q differs by %g", where, d)
	}
	baseNodes, baseInits := names(base)
	gotNodes, gotInits := names(loaded)
	if !slices.Equal(gotNodes, baseNodes) || !slices.Equal(gotInits, baseInits) || len(loaded.Graph().Input) != len(base.Graph().Input) {
		t.Errorf("merged after load: names differ from the base's")
	}
}
