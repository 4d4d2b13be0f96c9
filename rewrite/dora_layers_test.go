package rewrite

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/half"
)

// TestDoRAEmbeddingConv gives ConvLM's embedding, Conv1d and Conv2d DoRA
// and holds each step to independent math: a fresh injection computes the
// base's logits, with one magnitude more per output feature to train; with
// random factors and magnitudes, the adapted logits on ONNX Runtime equal
// a Go forward pass in float64 whose weights are DoRA's m·V/‖V‖, V = W +
// s·ΔW, from the HF file SaveDir wrote (ΔW = (B·A)ᵀ of lora_embedding_A
// and _B, normed per embedding dimension; B·A of a convolution's lora_A
// and lora_B, normed over all axes but the output channel; magnitudes
// [dim] and [1, out, 1…] as PEFT keeps them); Apply of the file computes
// the same; Merge and MergeAdapter match the adapted model and keep the
// norms, with which Unmerge gives the adapted model and the base weights
// back.
func TestDoRAEmbeddingConv(t *testing.T) {
	base := convLM(t)
	baseOut := runConvLM(t, base)
	cfg := config(2, 6, "model.embed_tokens", "model.conv.d")
	cfg.UseDoRA = true
	m := base.Clone()
	sites, sum, err := InjectLoRA(m, cfg, WithSeed(4))
	if err != nil {
		t.Fatal(err)
	}
	cfg.UseDoRA = false
	_, plain, err := InjectLoRA(base.Clone(), cfg, WithSeed(4))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 3 || sum.TrainableParams != plain.TrainableParams+3*8 || len(sum.LoRA) != 9 {
		t.Fatalf("%d sites, trainable %d (LoRA %d) %v: want 3 sites and 8 magnitudes each", len(sites), sum.TrainableParams, plain.TrainableParams, sum.LoRA)
	}
	if d := maxDiff(runConvLM(t, m), baseOut); !(d <= 1e-5) {
		t.Fatalf("fresh DoRA injection differs from the base by %g", d)
	}

	randomizeFactors(t, m, sites, 9)
	rng := rand.New(rand.NewPCG(11, 2))
	for _, s := range sites {
		tn := m.Initializer(s.Magnitude)
		vals, err := m.Float32s(tn)
		if err != nil {
			t.Fatal(err)
		}
		for i := range vals {
			vals[i] *= float32(0.5 + rng.Float64())
		}
		if err := graph.SetFloat32s(tn, vals); err != nil {
			t.Fatal(err)
		}
	}
	adapted := runConvLM(t, m)

	ad, err := ExtractAdapter(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := adapter.SaveDir(dir, ad); err != nil {
		t.Fatal(err)
	}
	file, _, err := adapter.ReadSafetensors(filepath.Join(dir, adapter.HFWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	hf := func(key string, shape ...int64) []float32 {
		t.Helper()
		tn := file["base_model.model."+key]
		if tn == nil || !slices.Equal(tn.Shape, shape) {
			t.Fatalf("HF file: %s is %v, want shape %v", key, tn, shape)
		}
		return tn.Data
	}
	s := cfg.Alpha / float64(cfg.R)
	weights := convLMWeights(t, base)
	// Embedding: V[v, h] = E + s·Σ_r A[r, v]·B[h, r], normed over v.
	ea, eb := hf("model.embed_tokens.lora_embedding_A", 2, 32), hf("model.embed_tokens.lora_embedding_B", 8, 2)
	delta := make([]float64, 32*8)
	for v := 0; v < 32; v++ {
		for h := 0; h < 8; h++ {
			for r := 0; r < 2; r++ {
				delta[v*8+h] += s * float64(ea[r*32+v]) * float64(eb[h*2+r])
			}
		}
	}
	weights.emb = doraRescaled(weights.emb, delta, func(k int) int { return k % 8 }, hf("model.embed_tokens.lora_magnitude_vector.weight", 8))
	// Convolutions: V[o, i, k] = W + s·Σ_r B[o, r]·A[r, i, k], normed per o.
	for _, c := range []struct {
		module string
		w      *[]float32
		a      []int64
	}{{"model.conv1d", &weights.conv1, []int64{2, 8, 3}}, {"model.conv2d", &weights.conv2, []int64{2, 8, 1, 3}}} {
		ones := slices.Repeat([]int64{1}, len(c.a)-2)
		a := hf(c.module+".lora_A.weight", c.a...)
		b := hf(c.module+".lora_B.weight", append([]int64{8, 2}, ones...)...)
		mag := hf(c.module+".lora_magnitude_vector.weight", append([]int64{1, 8}, ones...)...)
		per := len(a) / 2
		delta := make([]float64, 8*per)
		for o := 0; o < 8; o++ {
			for j := 0; j < per; j++ {
				for r := 0; r < 2; r++ {
					delta[o*per+j] += s * float64(b[o*2+r]) * float64(a[r*per+j])
				}
			}
		}
		*c.w = doraRescaled(*c.w, delta, func(k int) int { return k / per }, mag)
	}
	want := weights.forward(convLMIDs, 2, 6)
	if d := maxDiff(adapted, want); !(d <= 1e-4) {
		t.Errorf("adapted logits differ from the Go forward pass with DoRA's weights by %g", d)
	}
	if d := maxDiff(adapted, baseOut); !(d >= 1e-2) {
		t.Fatalf("random factors and magnitudes changed the logits by only %g", d)
	}

	back, err := adapter.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !back.LoRA.UseDoRA {
		t.Fatal("the HF directory lost use_dora")
	}
	applied := base.Clone()
	if _, _, err := ApplyLoRA(applied, back); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, applied), adapted); !(d <= 1e-6) {
		t.Errorf("Apply of the HF file differs from the adapted model by %g", d)
	}
	direct := base.Clone()
	if err := MergeAdapter(direct, back); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, direct), adapted); !(d <= 1e-5) {
		t.Errorf("MergeAdapter differs from the adapted model by %g", d)
	}
	merged := m.Clone()
	if err := Merge(merged); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, merged), adapted); !(d <= 1e-5) {
		t.Errorf("Merge differs from the adapted model by %g", d)
	}
	baseNodes, baseInits := names(base)
	gotNodes, gotInits := names(merged)
	if !slices.Equal(gotNodes, baseNodes) || !slices.Equal(gotInits, baseInits) {
		t.Errorf("merged names: got nodes %v inits %v want %v %v", gotNodes, gotInits, baseNodes, baseInits)
	}
	for what, mm := range map[string]*graph.Model{"Merge": merged, "MergeAdapter": direct} {
		if rec, err := readDoRARecord(mm); err != nil || len(rec.Merges) != 3 {
			t.Fatalf("%s: DoRA norms kept %+v, %v; want three", what, rec, err)
		}
		un := mm.Clone()
		if _, _, err := Unmerge(un, back); err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(runConvLM(t, un), adapted); !(d <= 1e-5) {
			t.Errorf("%s, Unmerge: differs from the adapted model by %g", what, d)
		}
		for _, name := range []string{"model.embed_tokens.weight", "model.conv1d.weight", "model.conv2d.weight"} {
			got, _ := un.Float32s(un.Initializer(name))
			want, _ := base.Float32s(base.Initializer(name))
			if d := maxDiff(got, want); !(d <= 1e-5) {
				t.Errorf("%s, Unmerge: %s is off the base's by %g", what, name, d)
			}
		}
		if rec, err := readDoRARecord(un); err != nil || len(rec.Merges) != 0 {
			t.Errorf("%s, Unmerge: the model keeps DoRA norms %+v, %v", what, rec, err)
		}
	}
}

// doraRescaled returns m[f]·V/‖V_f‖ in float32 with V = w + delta, the
// norm taken over the elements k of each feature f = feature(k).
func doraRescaled(w []float32, delta []float64, feature func(k int) int, mag []float32) []float32 {
	v := make([]float64, len(w))
	norm := make([]float64, len(mag))
	for k := range w {
		v[k] = float64(w[k]) + delta[k]
		norm[feature(k)] += v[k] * v[k]
	}
	out := make([]float32, len(w))
	for k := range v {
		f := feature(k)
		out[k] = float32(float64(mag[f]) * v[k] / math.Sqrt(norm[f]))
	}
	return out
}

// TestDoRAEmbeddingRefusals checks what DoRA on an embedding refuses: a
// table that trains along, whose norm the graph keeps as a constant, and
// one whose squared norms a float16 branch cannot hold; and a
// convolution's magnitude not in HF PEFT's shape.
func TestDoRAEmbeddingRefusals(t *testing.T) {
	base := convLM(t)
	cfg := config(2, 6, "model.embed_tokens")
	cfg.UseDoRA = true
	cfg.TrainableModules = []string{"model.embed_tokens.weight"}
	if _, _, err := InjectLoRA(base.Clone(), cfg); err == nil || !strings.Contains(err.Error(), "trainable_modules") {
		t.Errorf("DoRA on a trained table: got %v, want a refusal", err)
	}

	// A float16 branch holds ‖W_d‖² in float16: a table past its range
	// is refused.
	big := base.Clone()
	table := big.Initializer("model.embed_tokens.weight")
	vals, err := big.Float32s(table)
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		vals[i] *= 300
	}
	if err := graph.SetFloat32s(table, vals); err != nil {
		t.Fatal(err)
	}
	cfg = config(2, 6, "model.embed_tokens")
	cfg.UseDoRA, cfg.DType = true, dtype.Float16
	if _, _, err := InjectLoRA(big, cfg); err == nil || !strings.Contains(err.Error(), "past the largest float16") {
		t.Errorf("DoRA on a table past float16 in a float16 branch: got %v, want a refusal", err)
	}

	cfg = config(2, 6, "model.conv1d")
	cfg.UseDoRA = true
	m := base.Clone()
	if _, _, err := InjectLoRA(m, cfg); err != nil {
		t.Fatal(err)
	}
	ad, err := ExtractAdapter(m)
	if err != nil {
		t.Fatal(err)
	}
	w := ad.Weights["model.conv1d"]
	w.Magnitude = &adapter.Tensor{DType: w.Magnitude.DType, Shape: []int64{8}, Data: w.Magnitude.Data}
	ad.Weights["model.conv1d"] = w
	if _, _, err := ApplyLoRA(base.Clone(), ad); err == nil || !strings.Contains(err.Error(), "[1 8 1]") {
		t.Errorf("a convolution's magnitude [8]: got %v, want a refusal naming [1 8 1]", err)
	}
}

// TestDoRAEmbeddingConvFloat16 applies a float16 DoRA adapter to ConvLM's
// float32 embedding and convolutions (the norms cast the table and the
// weights to the branch's type): the logits are those of the float32
// adapter to within the rounding of its factors.
func TestDoRAEmbeddingConvFloat16(t *testing.T) {
	base := convLM(t)
	cfg := config(2, 6, "model.embed_tokens", "model.conv.d")
	cfg.UseDoRA = true
	m := base.Clone()
	sites, _, err := InjectLoRA(m, cfg, WithSeed(4))
	if err != nil {
		t.Fatal(err)
	}
	randomizeFactors(t, m, sites, 9)
	want := runConvLM(t, m)
	ad, err := ExtractAdapter(m)
	if err != nil {
		t.Fatal(err)
	}
	ad.LoRA.DType = dtype.Float16
	for _, w := range ad.Weights {
		for _, tn := range []*adapter.Tensor{w.A, w.B, w.Magnitude} {
			tn.DType = dtype.Float16
			for i, v := range tn.Data {
				tn.Data[i] = half.Float16ToFloat32(half.Float32ToFloat16(v))
			}
		}
	}
	half16 := base.Clone()
	if _, _, err := ApplyLoRA(half16, ad); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, half16), want); !(d <= 1e-3) {
		t.Errorf("float16 DoRA differs from float32 by %g", d)
	}
	if d := maxDiff(want, runConvLM(t, base)); !(d >= 1e-2) {
		t.Fatalf("the adapter changed the logits by only %g", d)
	}
}
