package main

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests cover the harness's own arithmetic and files. They need
// neither PyTorch nor ONNX Runtime; the comparisons themselves run from
// the bench targets.

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for i, tc := range tests {
		if got := median(tc.in); got != tc.want {
			t.Errorf("unexpected median for test %d: got %v want %v", i, got, tc.want)
		}
	}
	in := []float64{3, 1, 2}
	median(in)
	if !slices.Equal(in, []float64{3, 1, 2}) {
		t.Errorf("median reordered its input: %v", in)
	}
}

func TestRelDiff(t *testing.T) {
	tests := []struct{ a, b, want float64 }{
		{0, 0, 0},
		{1, 1, 0},
		{1, 2, 0.5},
		{-2, 2, 2},
	}
	for i, tc := range tests {
		if got := relDiff(tc.a, tc.b); got != tc.want {
			t.Errorf("unexpected relDiff for test %d: got %v want %v", i, got, tc.want)
		}
	}
}

func TestTensorRel(t *testing.T) {
	inf, l2 := tensorRel([]float32{1, 2, 4}, []float32{1, 2, 3})
	if want := 1.0 / 3; math.Abs(inf-want) > 1e-12 {
		t.Errorf("max-norm relative difference: got %v want %v", inf, want)
	}
	if want := 1 / math.Sqrt(14); math.Abs(l2-want) > 1e-12 {
		t.Errorf("L2 relative difference: got %v want %v", l2, want)
	}
	if inf, l2 := tensorRel([]float32{0, 0}, []float32{0, 0}); inf != 0 || l2 != 0 {
		t.Errorf("equal zero tensors: got %v, %v want 0, 0", inf, l2)
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	want := map[string]stTensor{
		"a":   {Shape: []int64{2, 2}, F32: []float32{1, -2, 3.5, 0}},
		"ids": {Shape: []int64{3}, I64: []int64{0, 50256, -100}},
		"s":   {Shape: []int64{}, F32: []float32{7}},
	}
	if err := writeSafetensors(path, want, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	got, meta, err := readSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" {
		t.Errorf("metadata: got %v want k=v", meta)
	}
	for name, w := range want {
		g := got[name]
		if !slices.Equal(g.Shape, w.Shape) || !slices.Equal(g.F32, w.F32) || !slices.Equal(g.I64, w.I64) {
			t.Errorf("tensor %q: got %+v want %+v", name, g, w)
		}
	}
}

func TestSpecTokens(t *testing.T) {
	s, err := newSpec("tiny", 2, 5, 20)
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.tokens(), s.tokens()
	if len(a) != s.Batches || len(a[0]) != 10 {
		t.Fatalf("got %d batches of %d ids, want %d of 10", len(a), len(a[0]), s.Batches)
	}
	for i := range a {
		if !slices.Equal(a[i], b[i]) {
			t.Fatalf("batch %d differs between two calls", i)
		}
		for _, id := range a[i] {
			if id < 0 || id >= int64(s.Model.VocabSize) {
				t.Fatalf("token id %d out of the vocabulary of %d", id, s.Model.VocabSize)
			}
		}
	}
	if _, err := newSpec("huge", 1, 1, 1); err == nil {
		t.Error("unknown size: got no error")
	}
	if s.key() == (Spec{}).key() {
		t.Error("key ignores the spec")
	}
}

// PEFTBENCH_LORA_TARGETS replaces the spec's targets, in another export
// folder, and an empty name in it is an error.
func TestLoRATargetsEnv(t *testing.T) {
	plain, err := newSpec("tiny", 2, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(loraTargetsEnv, "q_proj,v_proj,lm_head")
	s, err := newSpec("tiny", 2, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"q_proj", "v_proj", "lm_head"}; !slices.Equal(s.LoRA.Targets, want) {
		t.Errorf("targets %v, want %v", s.LoRA.Targets, want)
	}
	if s.key() == plain.key() || s.modelKey() == plain.modelKey() {
		t.Errorf("the targets do not change the export folder: %s, %s", s.key(), s.modelKey())
	}
	t.Setenv(loraTargetsEnv, "q_proj,,lm_head")
	if _, err := newSpec("tiny", 2, 5, 1); err == nil {
		t.Errorf("%s with an empty name: no error", loraTargetsEnv)
	}
}

func TestScalePlot(t *testing.T) {
	mk := func(size string, params int64, seq int, peft, torch float64) *Comparison {
		return &Comparison{Size: size, Params: params, Seq: seq,
			Peft:  SideResult{MedianMS: peft, PeakRSSMB: 2 * peft},
			Torch: SideResult{MedianMS: torch, PeakRSSMB: 2 * torch}}
	}
	seqs := []*Comparison{mk("base", 181e6, 64, 900, 1000), mk("base", 181e6, 128, 1800, 2100), mk("base", 181e6, 256, 4000, 4100)}
	sizes := []*Comparison{mk("tiny", 6500, 128, 3, 5), mk("mini", 124e3, 128, 20, 30), mk("base", 181e6, 128, 1800, 2100)}
	path := filepath.Join(t.TempDir(), "scaling.png")
	if err := writeScalePlot(path, seqs, sizes); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Dx(); got != 2*panelW {
		t.Errorf("plot width: got %d want %d", got, 2*panelW)
	}
	// Both series' colours appear.
	var peft, torch bool
	for y := 0; y < img.Bounds().Dy(); y++ {
		for x := 0; x < img.Bounds().Dx(); x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			c := [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8)}
			peft = peft || c == [3]uint8{colPeft.R, colPeft.G, colPeft.B}
			torch = torch || c == [3]uint8{colTorch.R, colTorch.G, colTorch.B}
		}
	}
	if !peft || !torch {
		t.Errorf("plot lacks a series: peftonnx %v, pytorch %v", peft, torch)
	}
}

func TestTables(t *testing.T) {
	c := &Comparison{Name: "LoRA training step", Size: "base", Params: 181e6, Batch: 8, Seq: 128,
		Peft: SideResult{MedianMS: 900}, Torch: SideResult{MedianMS: 1000}, TimeRatio: 0.9, MemRatio: 1.1}
	tab := comparisonTable([]*Comparison{c})
	for _, want := range []string{"| LoRA training step | base (181.0M) | 8×128 |", "**0.90×**", "**1.10×**"} {
		if !strings.Contains(tab, want) {
			t.Errorf("comparison table lacks %q:\n%s", want, tab)
		}
	}
	p := &ParityResult{Size: "tiny", Batch: 8, Seq: 128, Steps: 20, PeftLoss: []float64{3.5}, TorchLoss: []float64{3.5}, Pass: true}
	if tab := parityTable([]*ParityResult{p}); !strings.Contains(tab, "| PASS |") {
		t.Errorf("parity table lacks the verdict:\n%s", tab)
	}
}

func TestFormatTick(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {2.5, "2.5"}, {1500, "1500"}, {20000, "20K"}, {2.5e6, "2.5M"},
	}
	for i, tc := range tests {
		if got := formatTick(tc.v); got != tc.want {
			t.Errorf("unexpected tick for test %d: got %q want %q", i, got, tc.want)
		}
	}
}
