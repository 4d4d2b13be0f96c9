package rewrite

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// convLM builds the embedding + Conv1d + Conv2d fixture.
func convLM(t testing.TB) *graph.Model {
	t.Helper()
	m, err := models.ConvLM(models.ConvLMTiny())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFindLayersKinds(t *testing.T) {
	ls, err := FindLayers(convLM(t))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		module, kind string
		in, out      int64
		kernel       []int64
	}
	var got []row
	for _, l := range ls {
		got = append(got, row{l.Module, l.Kind, l.In, l.Out, l.Kernel})
	}
	want := []row{
		{"lm_head", KindLinear, 8, 32, nil},
		{"model.embed_tokens", KindEmbedding, 32, 8, nil},
		{"model.conv1d", KindConv, 8, 8, []int64{3}},
		{"model.conv2d", KindConv, 8, 8, []int64{1, 3}},
	}
	if !slices.EqualFunc(got, want, func(a, b row) bool {
		return a.module == b.module && a.kind == b.kind && a.in == b.in && a.out == b.out && slices.Equal(a.kernel, b.kernel)
	}) {
		t.Errorf("layers:\n got %v\nwant %v", got, want)
	}
}

// convLMIDs is the batch the layer-kind tests run: [2, 6] ids.
var convLMIDs = []int64{1, 5, 31, 0, 7, 7, 30, 2, 2, 9, 16, 4}

func runConvLM(t testing.TB, m *graph.Model) []float32 {
	t.Helper()
	ids, err := rt.NewInt64([]int64{2, 6}, convLMIDs)
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, session(t, m), map[string]*rt.Tensor{"input_ids": ids})
	return out["logits"].ToFloat32()
}

// TestEmbeddingConvLoRA injects LoRA into the embedding, the Conv1d and
// the Conv2d of ConvLM, and holds each step to independent math: a fresh
// injection computes the base's logits bit for bit; with random factors,
// the adapted logits on ONNX Runtime equal a Go forward pass whose weights
// are updated by HF PEFT's formulas from the HF file SaveDir wrote
// (lora_embedding_A [r, vocab] and lora_embedding_B [dim, r]: E + s·(B·A)ᵀ;
// lora_A.weight [r, in, k…] and lora_B.weight [out, r, 1…]: W + s·B·A);
// the file loads back to the same adapter, Apply of it computes the same
// logits, and Merge and MergeAdapter match the adapted model.
func TestEmbeddingConvLoRA(t *testing.T) {
	base := convLM(t)
	baseOut := runConvLM(t, base)
	m := base.Clone()
	cfg := config(2, 6, "model.embed_tokens", "model.conv.d")
	sites, _, err := InjectLoRA(m, cfg, WithSeed(4))
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) != 3 {
		t.Fatalf("got %d sites, want 3", len(sites))
	}
	fresh := runConvLM(t, m)
	for i := range baseOut {
		if math.Float32bits(fresh[i]) != math.Float32bits(baseOut[i]) {
			t.Fatalf("fresh injection: logit %d is %v, base %v", i, fresh[i], baseOut[i])
		}
	}

	randomizeFactors(t, m, sites, 9)
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
	s := cfg.Alpha / float64(cfg.R)
	weights := convLMWeights(t, base)
	hf := func(key string, shape ...int64) []float32 {
		t.Helper()
		tn := file["base_model.model."+key]
		if tn == nil || !slices.Equal(tn.Shape, shape) {
			t.Fatalf("HF file: %s is %v, want shape %v", key, tn, shape)
		}
		return tn.Data
	}
	// E'[v, h] = E + s·Σ_r A[r, v]·B[h, r]
	ea, eb := hf("model.embed_tokens.lora_embedding_A", 2, 32), hf("model.embed_tokens.lora_embedding_B", 8, 2)
	for v := 0; v < 32; v++ {
		for h := 0; h < 8; h++ {
			for r := 0; r < 2; r++ {
				weights.emb[v*8+h] += float32(s * float64(ea[r*32+v]) * float64(eb[h*2+r]))
			}
		}
	}
	// W'[o, i, k] = W + s·Σ_r B[o, r]·A[r, i, k]
	for _, c := range []struct {
		module string
		w      []float32
		a      []int64
	}{{"model.conv1d", weights.conv1, []int64{2, 8, 3}}, {"model.conv2d", weights.conv2, []int64{2, 8, 1, 3}}} {
		a := hf(c.module+".lora_A.weight", c.a...)
		b := hf(c.module+".lora_B.weight", append([]int64{8, 2}, slices.Repeat([]int64{1}, len(c.a)-2)...)...)
		per := len(a) / 2
		for o := 0; o < 8; o++ {
			for j := 0; j < per; j++ {
				for r := 0; r < 2; r++ {
					c.w[o*per+j] += float32(s * float64(b[o*2+r]) * float64(a[r*per+j]))
				}
			}
		}
	}
	want := weights.forward(convLMIDs, 2, 6)
	if d := maxDiff(adapted, want); d > 1e-4 {
		t.Errorf("adapted logits differ from the Go forward pass with HF PEFT's updated weights by %g", d)
	}
	if d := maxDiff(adapted, baseOut); d < 1e-2 {
		t.Fatalf("random factors changed the logits by only %g", d)
	}

	back, err := adapter.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range ad.Modules() {
		w, g := ad.Weights[mod], back.Weights[mod]
		if !slices.Equal(w.A.Shape, g.A.Shape) || !slices.Equal(w.A.Data, g.A.Data) || !slices.Equal(w.B.Shape, g.B.Shape) || !slices.Equal(w.B.Data, g.B.Data) || w.Embedding != g.Embedding {
			t.Errorf("module %s does not round-trip through the HF file", mod)
		}
	}
	applied := base.Clone()
	if _, _, err := ApplyLoRA(applied, back); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, applied), adapted); d != 0 {
		t.Errorf("Apply of the HF file differs from the adapted model by %g", d)
	}
	merged := base.Clone()
	if err := MergeAdapter(merged, back); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, merged), adapted); d > 1e-5 {
		t.Errorf("MergeAdapter differs from the adapted model by %g", d)
	}
	unmerged := merged.Clone()
	if _, _, err := Unmerge(unmerged, back); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, unmerged), adapted); d > 1e-5 {
		t.Errorf("Unmerge differs from the adapted model by %g", d)
	}
	for _, name := range []string{"model.embed_tokens.weight", "model.conv1d.weight", "model.conv2d.weight"} {
		got, _ := unmerged.Float32s(unmerged.Initializer(name))
		want, _ := base.Float32s(base.Initializer(name))
		if d := maxDiff(got, want); d > 1e-5 {
			t.Errorf("Unmerge left %s off the base's by %g", name, d)
		}
	}
	if err := Merge(m); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, m), adapted); d > 1e-5 {
		t.Errorf("Merge differs from the adapted model by %g", d)
	}
	if len(m.Graph().Node) != len(base.Graph().Node) {
		t.Errorf("merged model has %d nodes, the base %d", len(m.Graph().Node), len(base.Graph().Node))
	}
}

// randomizeFactors gives both factors of every site random values (the
// embedding's A starts at zero, a convolution's B).
func randomizeFactors(t testing.TB, m *graph.Model, sites []Site, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 9))
	for _, s := range sites {
		for _, name := range []string{s.A, s.B} {
			tn := m.Initializer(name)
			vals := make([]float32, graph.NumElements(tn.Dims))
			for i := range vals {
				vals[i] = float32(rng.NormFloat64() * 0.5)
			}
			if err := graph.SetFloat32s(tn, vals); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// maxDiff returns the largest |a[i] − b[i]|: +Inf where the lengths
// differ or a value is NaN.
func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		e := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = math.Max(d, e)
	}
	return d
}

// TestDiffHelpersSeeNaN: for maxDiff, maxAbsDiff, frobenius and
// maxRelDiff, a NaN, on either side or both, is no match.
func TestDiffHelpersSeeNaN(t *testing.T) {
	nan := math.NaN()
	for _, c := range [][2][]float64{{{1, nan}, {1, 2}}, {{1, 2}, {1, nan}}, {{nan}, {nan}}} {
		a32, b32 := make([]float32, len(c[0])), make([]float32, len(c[1]))
		for i := range c[0] {
			a32[i], b32[i] = float32(c[0][i]), float32(c[1][i])
		}
		ta, err := rt.NewFloat64([]int64{int64(len(c[0]))}, c[0])
		if err != nil {
			t.Fatal(err)
		}
		tb, err := rt.NewFloat64([]int64{int64(len(c[1]))}, c[1])
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := maxRelDiff(t, map[string]*rt.Tensor{"y": ta}, map[string]*rt.Tensor{"y": tb})
		for what, d := range map[string]float64{"maxDiff": maxDiff(a32, b32), "maxAbsDiff": maxAbsDiff(c[0], c[1]), "frobenius": frobenius(c[0], c[1], nil), "maxRelDiff": rel} {
			if !math.IsInf(d, 1) {
				t.Errorf("%s(%v, %v) = %v, want +Inf", what, c[0], c[1], d)
			}
		}
	}
}

// convLMNet holds ConvLMTiny's weights for a forward pass in Go.
type convLMNet struct {
	emb, conv1, bias1, conv2, bias2, head []float32
}

func convLMWeights(t testing.TB, m *graph.Model) *convLMNet {
	t.Helper()
	get := func(name string) []float32 {
		v, err := m.Float32s(m.Initializer(name))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return &convLMNet{get("model.embed_tokens.weight"), get("model.conv1d.weight"), get("model.conv1d.bias"),
		get("model.conv2d.weight"), get("model.conv2d.bias"), get("lm_head.weight")}
}

// forward computes ConvLMTiny's logits (hidden 8, vocabulary 32, kernel
// 3, Conv2d dilation 2, both convolutions causal) from its definition.
func (n *convLMNet) forward(ids []int64, batch, seq int) []float32 {
	const h, v, k, dil = 8, 32, 3, 2
	conv := func(x []float64, w, bias []float32, step int) []float64 {
		y := make([]float64, len(x))
		for b := 0; b < batch; b++ {
			for o := 0; o < h; o++ {
				for t := 0; t < seq; t++ {
					acc := float64(bias[o])
					for i := 0; i < h; i++ {
						for j := 0; j < k; j++ {
							if src := t - step*(k-1) + step*j; src >= 0 {
								acc += float64(w[(o*h+i)*k+j]) * x[(b*h+i)*seq+src]
							}
						}
					}
					y[(b*h+o)*seq+t] = math.Max(0, acc)
				}
			}
		}
		return y
	}
	x := make([]float64, batch*h*seq) // [batch, hidden, seq]
	for b := 0; b < batch; b++ {
		for t := 0; t < seq; t++ {
			for c := 0; c < h; c++ {
				x[(b*h+c)*seq+t] = float64(n.emb[int(ids[b*seq+t])*h+c])
			}
		}
	}
	x = conv(conv(x, n.conv1, n.bias1, 1), n.conv2, n.bias2, dil)
	out := make([]float32, batch*seq*v)
	for b := 0; b < batch; b++ {
		for t := 0; t < seq; t++ {
			for j := 0; j < v; j++ {
				acc := 0.0
				for c := 0; c < h; c++ {
					acc += x[(b*h+c)*seq+t] * float64(n.head[c*v+j])
				}
				out[(b*seq+t)*v+j] = float32(acc)
			}
		}
	}
	return out
}

// TestEmbeddingConvAsInputs injects ConvLM's embedding and convolutions
// with factors as graph inputs: fed nothing, the model computes the base's
// logits bit for bit; fed an adapter through Feeds, those of the model
// that holds the adapter as initializers; Merge gives the base back and
// MergeAdapter the adapted model.
func TestEmbeddingConvAsInputs(t *testing.T) {
	base := convLM(t)
	baseOut := runConvLM(t, base)
	cfg := config(2, 6, "model.embed_tokens", "model.conv.d")
	held := base.Clone()
	sites, _, err := InjectLoRA(held, cfg, WithSeed(4))
	if err != nil {
		t.Fatal(err)
	}
	randomizeFactors(t, held, sites, 3)
	ad, err := ExtractAdapter(held)
	if err != nil {
		t.Fatal(err)
	}
	want := runConvLM(t, held)

	m := base.Clone()
	if _, _, err := InjectLoRA(m, cfg, AsInputs()); err != nil {
		t.Fatal(err)
	}
	for i, v := range runConvLM(t, m) {
		if math.Float32bits(v) != math.Float32bits(baseOut[i]) {
			t.Fatalf("fed nothing: logit %d is %v, base %v", i, v, baseOut[i])
		}
	}
	feeds, err := Feeds(m, ad)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]*rt.Tensor{}
	for name, f := range feeds {
		if in[name], err = rt.NewFloat32(f.Shape, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := rt.NewInt64([]int64{2, 6}, convLMIDs)
	if err != nil {
		t.Fatal(err)
	}
	in["input_ids"] = ids
	got := run(t, session(t, m), in)["logits"].ToFloat32()
	if d := maxDiff(got, want); d > 1e-5 {
		t.Errorf("fed the adapter, the logits differ from the adapted model's by %g", d)
	}
	if d := maxDiff(got, baseOut); d < 1e-2 {
		t.Fatalf("the fed adapter changed the logits by only %g", d)
	}
	// Merge restores the base (the defaults add zero); MergeAdapter bakes
	// the adapter in.
	if err := Merge(m); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, m), baseOut); d != 0 {
		t.Errorf("Merge of the defaults changed the logits by %g", d)
	}
	if err := MergeAdapter(m, ad); err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(runConvLM(t, m), want); d > 1e-5 {
		t.Errorf("MergeAdapter differs from the adapted model by %g", d)
	}
}
