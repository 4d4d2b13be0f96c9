package rewrite

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/half"
)

// expectDoRA computes tc's DoRA output in float64 from the definition:
// V = α·W + s·A·Bfull [in, out], y[:, j] = m[j]/‖V[:, j]‖ · (x·V)[:, j]
// + β·C[j]. V is expectLayer of the identity (no bias, no
// relu), x·V expectLayer of x.
func expectDoRA(tc layerCase, x, weff, bias []float64, ad *adapter.Adapter) []float64 {
	plain := tc
	plain.relu = false
	eye := make([]float64, tc.in*tc.in)
	for i := 0; i < tc.in; i++ {
		eye[i*tc.in+i] = 1
	}
	v := expectLayer(plain, eye, weff, nil, ad)
	norm := make([]float64, tc.out)
	for i := 0; i < tc.in; i++ {
		for j := 0; j < tc.out; j++ {
			norm[j] += v[i*tc.out+j] * v[i*tc.out+j]
		}
	}
	xv := expectLayer(plain, x, weff, nil, ad)
	mag := ad.Weights["layer.proj"].Magnitude.Data
	beta := 1.0
	if tc.gemm {
		beta = float64(tc.beta)
	}
	for k := range xv {
		j := k % tc.out
		xv[k] *= float64(mag[j]) / math.Sqrt(norm[j])
		if bias != nil {
			xv[k] += beta * bias[j]
		}
		if tc.relu {
			xv[k] = math.Max(xv[k], 0)
		}
	}
	return xv
}

// doraAdapter is layerAdapter with use_dora and a random magnitude.
func doraAdapter(tc layerCase, seed uint64) *adapter.Adapter {
	rng := newRand(seed)
	ad := layerAdapter(tc, rng)
	ad.LoRA.UseDoRA = true
	mag := make([]float32, tc.out)
	for j := range mag {
		mag[j] = float32(0.5 + rng.Float64())
		if tc.adt == dtype.Float16 {
			mag[j] = half.Float16ToFloat32(half.Float32ToFloat16(mag[j]))
		}
	}
	w := ad.Weights["layer.proj"]
	w.Magnitude = &adapter.Tensor{DType: tc.adt.Or(dtype.Float32), Shape: []int64{int64(tc.out)}, Data: mag}
	ad.Weights["layer.proj"] = w
	return ad
}

// TestDoRAMath checks DoRA on one layer, across the layer forms of
// TestLayerMath: a fresh injection computes the base; an adapter's forward
// matches the float64 formula; Merge and MergeAdapter give the same with
// the base's nodes and initializers; the adapter survives an HF PEFT
// directory, magnitude included.
func TestDoRAMath(t *testing.T) {
	for i, tc := range layerCases {
		t.Run(tc.name, func(t *testing.T) {
			rng := newRand(uint64(i))
			base, weff, bias := layerModel(t, tc, rng)
			feeds, x64 := layerInput(t, tc, rng)
			check := func(what string, m *graph.Model, want []float64, tol float64) {
				t.Helper()
				got := run(t, session(t, m), feeds)["y"].ToFloat64()
				for j := range want {
					if d := math.Abs(got[j]-want[j]) / math.Max(1, math.Abs(want[j])); d > tol || math.IsNaN(got[j]) {
						t.Fatalf("%s: y[%d]: got %v want %v", what, j, got[j], want[j])
					}
				}
			}
			baseOut := run(t, session(t, base), feeds)["y"].ToFloat64()

			// A fresh injection: B is zero and m the column norms of W.
			cfg := config(tc.r, tc.loraA, "layer.proj")
			cfg.UseDoRA, cfg.UseRSLoRA, cfg.DType = true, tc.rslora, tc.adt
			if tc.enable != nil {
				cfg.EnableLoRAList = adapter.EnableLoRAList{PerTarget: [][]bool{tc.enable}}
				cfg.HeadDim = tc.headDim
			}
			fresh := base.Clone()
			sites, sum, err := InjectLoRA(fresh, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if sites[0].Magnitude != "layer.proj"+doraSuffix || !slices.Contains(sum.LoRA, sites[0].Magnitude) {
				t.Fatalf("site magnitude %q, trainable %v", sites[0].Magnitude, sum.LoRA)
			}
			plain := base.Clone()
			cfg.UseDoRA = false
			_, plainSum, err := InjectLoRA(plain, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if sum.TrainableParams != plainSum.TrainableParams+int64(tc.out) {
				t.Errorf("trainable params: DoRA %d, LoRA %d, want LoRA + %d", sum.TrainableParams, plainSum.TrainableParams, tc.out)
			}
			check("fresh", fresh, baseOut, tc.tol)

			ad := doraAdapter(tc, uint64(i)+100)
			want := expectDoRA(tc, x64, weff, bias, ad)
			adapted := base.Clone()
			if _, _, err := ApplyLoRA(adapted, ad); err != nil {
				t.Fatal(err)
			}
			check("adapted", adapted, want, tc.tol)
			mergeTol := tc.tol
			if tc.wCast {
				mergeTol = 2e-2 // the merged weight is stored in float16
			}
			merged := adapted.Clone()
			if err := Merge(merged); err != nil {
				t.Fatal(err)
			}
			check("merged", merged, want, mergeTol)
			baseNodes, baseInits := names(base)
			gotNodes, gotInits := names(merged)
			if !slices.Equal(gotNodes, baseNodes) || !slices.Equal(gotInits, baseInits) {
				t.Errorf("merged names: got nodes %v inits %v want %v %v", gotNodes, gotInits, baseNodes, baseInits)
			}
			direct := base.Clone()
			if err := MergeAdapter(direct, ad); err != nil {
				t.Fatal(err)
			}
			check("MergeAdapter", direct, want, mergeTol)

			out, err := ExtractAdapter(adapted)
			if err != nil {
				t.Fatal(err)
			}
			back := throughHFDir(t, out)
			if !back.LoRA.UseDoRA || back.Weights["layer.proj"].Magnitude == nil {
				t.Fatalf("HF directory lost DoRA: use_dora %v", back.LoRA.UseDoRA)
			}
			again := base.Clone()
			if _, _, err := ApplyLoRA(again, back); err != nil {
				t.Fatal(err)
			}
			check("through HF", again, want, tc.tol)
			checkDoRAUnmerge(t, tc, base, merged, ad, func(what string, m *graph.Model) { check(what, m, want, mergeTol) })
			checkDoRAUnmerge(t, tc, base, direct, ad, func(what string, m *graph.Model) { check("MergeAdapter "+what, m, want, mergeTol) })
		})
	}
}

// TestDoRAHFKeys checks the key HF PEFT 0.12 and later write for the
// magnitude, and that the older key without ".weight" is read too.
func TestDoRAHFKeys(t *testing.T) {
	tc := layerCases[0]
	ad := doraAdapter(tc, 7)
	dir := t.TempDir()
	if err := adapter.SaveDir(dir, ad); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, adapter.HFWeightsFile)
	tensors, meta, err := adapter.ReadSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	const key = "base_model.model.layer.proj.lora_magnitude_vector.weight"
	mag := tensors[key]
	if mag == nil || !slices.Equal(mag.Shape, []int64{int64(tc.out)}) || !slices.Equal(mag.Data, ad.Weights["layer.proj"].Magnitude.Data) {
		t.Fatalf("%s: got %v, want the magnitude [%d]", key, mag, tc.out)
	}
	delete(tensors, key)
	tensors[strings.TrimSuffix(key, ".weight")] = mag
	data, err := adapter.EncodeSafetensors(tensors, meta)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// As HF PEFT writes it: no peftonnx hash of the weights file.
	cfgPath := filepath.Join(dir, adapter.HFConfigFile)
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfgJSON map[string]any
	if err := json.Unmarshal(raw, &cfgJSON); err != nil {
		t.Fatal(err)
	}
	delete(cfgJSON, "peftonnx")
	if raw, err = json.Marshal(cfgJSON); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := adapter.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Weights["layer.proj"].Magnitude; got == nil || !slices.Equal(got.Data, mag.Data) {
		t.Fatalf("older key: magnitude %v, want %v", got, mag.Data)
	}
	if _, err := adapter.NewONNXAdapterFile(ad); err == nil || !strings.Contains(err.Error(), "cannot hold a DoRA adapter") {
		t.Errorf(".onnx_adapter of DoRA: got %v, want a refusal", err)
	}
}

// TestDoRARefusals checks that what cannot carry DoRA says so: factors as
// graph inputs, at injection and when fed.
func TestDoRARefusals(t *testing.T) {
	tc := layerCases[0]
	base, _, _ := layerModel(t, tc, newRand(1))
	cfg := config(tc.r, tc.loraA, "layer.proj")
	cfg.UseDoRA = true
	if _, _, err := InjectLoRA(base.Clone(), cfg, AsInputs()); err == nil || !strings.Contains(err.Error(), "AsInputs") {
		t.Errorf("DoRA with AsInputs: got %v, want a refusal", err)
	}
	inputs := base.Clone()
	cfg.UseDoRA = false
	if _, _, err := InjectLoRA(inputs, cfg, AsInputs()); err != nil {
		t.Fatal(err)
	}
	if _, err := Feeds(inputs, doraAdapter(tc, 2)); err == nil || !strings.Contains(err.Error(), "DoRA") {
		t.Errorf("Feeds of a DoRA adapter: got %v, want a refusal", err)
	}
}

// TestDoRADropout checks DoRA with dropout: the dropout sits on the LoRA
// product only, so a fresh model in inference (training mode false, the
// default) computes what the base does, and merging still gives the
// adapted model's outputs.
func TestDoRADropout(t *testing.T) {
	tc := layerCases[1] // matmul-relu: the layer's output is read by a node
	rng := newRand(9)
	base, _, _ := layerModel(t, tc, rng)
	feeds, _ := layerInput(t, tc, rng)
	cfg := config(tc.r, tc.loraA, "layer.proj")
	cfg.UseDoRA, cfg.Dropout = true, 0.2
	m := base.Clone()
	sites, _, err := InjectLoRA(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := run(t, session(t, base), feeds)["y"].ToFloat64()
	got := run(t, session(t, m), feeds)["y"].ToFloat64()
	for j := range want {
		if math.Abs(got[j]-want[j]) > 1e-5*math.Max(1, math.Abs(want[j])) {
			t.Fatalf("fresh DoRA with dropout: y[%d] = %v, base %v", j, got[j], want[j])
		}
	}
	randomizeB(t, m, sites, 2, 0.5)
	adapted := run(t, session(t, m), feeds)["y"].ToFloat64()
	merged := m.Clone()
	if err := Merge(merged); err != nil {
		t.Fatal(err)
	}
	mo := run(t, session(t, merged), feeds)["y"].ToFloat64()
	for j := range adapted {
		if math.Abs(mo[j]-adapted[j]) > 1e-5*math.Max(1, math.Abs(adapted[j])) {
			t.Fatalf("merged DoRA with dropout: y[%d] = %v, adapted %v", j, mo[j], adapted[j])
		}
	}
}

// TestDoRAPaddleLayouts checks that PaddleNLP's layouts, which have no
// DoRA, refuse a DoRA adapter rather than drop its magnitudes.
func TestDoRAPaddleLayouts(t *testing.T) {
	ad := doraAdapter(layerCases[0], 4)
	if err := adapter.SavePaddleDir(t.TempDir(), ad); err == nil || !strings.Contains(err.Error(), "no DoRA") {
		t.Errorf("SavePaddleDir of DoRA: got %v, want a refusal", err)
	}
	if err := adapter.SavePaddleShards(t.TempDir(), ad, 2); err == nil || !strings.Contains(err.Error(), "no DoRA") {
		t.Errorf("SavePaddleShards of DoRA: got %v, want a refusal", err)
	}
}

// checkDoRAUnmerge unmerges merged, a DoRA merge of ad on base: the
// outputs come back to the adapted model's (check), the base weights to
// within float rounding, and the kept norms leave the metadata. A merge
// without the kept norms (written before peftonnx kept them) and a wrong
// magnitude are refused, the model unchanged.
func checkDoRAUnmerge(t *testing.T, tc layerCase, base, merged *graph.Model, ad *adapter.Adapter, check func(string, *graph.Model)) {
	t.Helper()
	if rec, err := readDoRARecord(merged); err != nil || len(rec.Merges) != 1 || len(rec.Merges[0].Norm) != tc.out {
		t.Fatalf("merged DoRA record: %+v, %v", rec, err)
	}
	legacy := merged.Clone()
	if err := (doraRecord{}).write(legacy, DoRAMetadataKey); err != nil {
		t.Fatal(err)
	}
	before := legacy.Clone()
	if _, _, err := Unmerge(legacy, ad); err == nil || !strings.Contains(err.Error(), "keeps no ‖W + s·A·B‖") {
		t.Errorf("Unmerge without kept norms: got %v, want a refusal", err)
	}
	wrong := merged.Clone()
	other := doraAdapter(tc, 999)
	other.Weights["layer.proj"] = adapter.LoRAWeights{A: ad.Weights["layer.proj"].A, B: ad.Weights["layer.proj"].B, Magnitude: other.Weights["layer.proj"].Magnitude}
	if _, _, err := Unmerge(wrong, other); err == nil || !strings.Contains(err.Error(), "not merged with this adapter") {
		t.Errorf("Unmerge with another magnitude: got %v, want a refusal", err)
	}
	for _, pair := range [][2]*graph.Model{{legacy, before}, {wrong, merged}} {
		a, b := initValues(t, pair[0]), initValues(t, pair[1])
		for name, v := range b {
			if !slices.Equal(a[name], v) {
				t.Errorf("a refused Unmerge changed %q", name)
			}
		}
	}

	un := merged.Clone()
	if _, _, err := Unmerge(un, ad); err != nil {
		t.Fatal(err)
	}
	check("unmerged", un)
	if rec, err := readDoRARecord(un); err != nil || len(rec.Merges) != 0 {
		t.Errorf("unmerged model keeps DoRA norms %+v, %v", rec, err)
	}
	// The base weights come back to within the rounding of their type:
	// relative 1e-5 of the largest weight in float32, 2e-3 in float16.
	wtol := 1e-5
	if tc.elem == dtype.Float16 || tc.wCast {
		wtol = 2e-3
	}
	got, want := initValues(t, un), initValues(t, base)
	for name, w := range want {
		g, ok := got[name]
		if !ok || len(g) != len(w) {
			t.Fatalf("unmerged model lost base initializer %q", name)
		}
		scale := 0.0
		for _, v := range w {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		for k := range w {
			if d := math.Abs(float64(g[k]) - float64(w[k])); d > wtol*math.Max(scale, 1e-30) {
				t.Fatalf("unmerged %q[%d] = %v, base %v (tolerance %g of %g)", name, k, g[k], w[k], wtol, scale)
			}
		}
	}
	again := un.Clone()
	if err := Merge(again); err != nil {
		t.Fatal(err)
	}
	check("merged again", again)
}

// initValues returns m's float initializers by name.
func initValues(t *testing.T, m *graph.Model) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, in := range m.Proto.Graph.Initializer {
		if v, err := m.Float32s(in); err == nil {
			out[in.Name] = v
		}
	}
	return out
}
