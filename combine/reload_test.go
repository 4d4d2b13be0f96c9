package combine_test

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
)

// TestReload checks that combined adapters whose modules have different
// ranks reload (peft#3737): the HF PEFT directory records rank_pattern
// and alpha_pattern and reads back bit for bit with scaling 1 everywhere;
// the .onnx_adapter file derives each rank from the shapes; PaddleNLP's
// layout has no rank_pattern, so it takes UniformRank's zero-padded copy,
// which has the same deltas.
func TestReload(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	patterned := func() *adapter.Adapter { // r 4, but v at rank 2
		ad := lora(4, 8, true, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 6, 4, 5), "l.v": randomFactors(rng, 6, 2, 3)})
		ad.LoRA.RankPattern = map[string]int{"v": 2}
		return ad
	}
	for _, test := range []struct {
		reason  string
		in      []combine.Input
		o       combine.Options
		r       int
		pattern map[string]int // the combined rank_pattern in the file
	}{
		{"cat", randomInputs(9), combine.Options{Method: combine.Cat}, 9, map[string]int{`l\.v`: 6, `l\.o`: 4}},
		{"linear of patterned inputs", inputs(patterned(), patterned()), combine.Options{Method: combine.Linear, Weights: []float64{0.5, 0.5}}, 4, map[string]int{`l\.v`: 2}},
		{"ties of patterned inputs", inputs(patterned(), patterned()), combine.Options{Method: combine.TIES, Density: 0.6}, 4, map[string]int{`l\.v`: 2}},
	} {
		got := mustCombine(t, test.in, test.o)
		dir := t.TempDir()

		hf := filepath.Join(dir, "hf")
		if err := adapter.Save(hf, got); err != nil {
			t.Fatalf("%s: %v", test.reason, err)
		}
		var file struct {
			R            int                `json:"r"`
			Alpha        float64            `json:"lora_alpha"`
			RSLoRA       bool               `json:"use_rslora"`
			Targets      []string           `json:"target_modules"`
			RankPattern  map[string]int     `json:"rank_pattern"`
			AlphaPattern map[string]float64 `json:"alpha_pattern"`
		}
		raw, err := os.ReadFile(filepath.Join(hf, adapter.HFConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &file); err != nil {
			t.Fatalf("%s: %v", test.reason, err)
		}
		if file.R != test.r || file.Alpha != float64(test.r) || file.RSLoRA {
			t.Errorf("%s: file has r %d, lora_alpha %v, use_rslora %v; want %d, %d, false", test.reason, file.R, file.Alpha, file.RSLoRA, test.r, test.r)
		}
		if !reflect.DeepEqual(file.RankPattern, test.pattern) {
			t.Errorf("%s: file has rank_pattern %v, want %v", test.reason, file.RankPattern, test.pattern)
		}
		for k, r := range test.pattern {
			if file.AlphaPattern[k] != float64(r) {
				t.Errorf("%s: file has alpha_pattern %v, want %s: %d", test.reason, file.AlphaPattern, k, r)
			}
		}
		if !slices.Equal(file.Targets, got.Modules()) {
			t.Errorf("%s: file has target_modules %q, want the modules %q", test.reason, file.Targets, got.Modules())
		}
		back, err := adapter.Load(hf)
		if err != nil {
			t.Fatalf("%s: reloading the HF directory: %v", test.reason, err)
		}
		if !reflect.DeepEqual(back.Weights, got.Weights) {
			t.Errorf("%s: HF directory: weights differ after the round trip", test.reason)
		}
		for _, m := range got.Modules() {
			if s := back.LoRA.ScalingFor(m); s != 1 {
				t.Errorf("%s: HF directory: %s has scaling %v, want 1", test.reason, m, s)
			}
		}

		ort := filepath.Join(dir, "a.onnx_adapter")
		if err := adapter.Save(ort, got); err != nil {
			t.Fatalf("%s: %v", test.reason, err)
		}
		back, err = adapter.Load(ort)
		if err != nil {
			t.Fatalf("%s: reloading the .onnx_adapter: %v", test.reason, err)
		}
		sameDeltas(t, test.reason+": .onnx_adapter", back, got)

		paddle := filepath.Join(dir, "paddle")
		if err := adapter.SavePaddleDir(paddle, got); err == nil || !strings.Contains(err.Error(), "rank_pattern") {
			t.Errorf("%s: PaddleNLP layout of a patterned adapter: got error %v, want one about rank_pattern", test.reason, err)
		}
		uniform, err := combine.UniformRank(got)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range uniform.Modules() {
			if r := uniform.LoRA.RankFor(m); r != test.r {
				t.Errorf("%s: UniformRank: %s has rank %d, want %d", test.reason, m, r, test.r)
			}
		}
		if err := adapter.SavePaddleDir(paddle, uniform); err != nil {
			t.Fatalf("%s: %v", test.reason, err)
		}
		back, err = adapter.Load(paddle)
		if err != nil {
			t.Fatalf("%s: reloading the PaddleNLP directory: %v", test.reason, err)
		}
		sameDeltas(t, test.reason+": PaddleNLP", back, got)
	}
}

// TestUniformRankFoldsScaling checks UniformRank on an adapter whose
// scaling is not 1: rsLoRA and a rank pattern give way to r = alpha, with
// the scaling in B.
func TestUniformRankFoldsScaling(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	ad := lora(4, 8, true, map[string]adapter.LoRAWeights{"l.q": randomFactors(rng, 6, 4, 5), "l.v": randomFactors(rng, 6, 2, 3)})
	ad.LoRA.RankPattern = map[string]int{"v": 2}
	got, err := combine.UniformRank(ad)
	if err != nil {
		t.Fatal(err)
	}
	if got.LoRA.R != 4 || got.LoRA.Alpha != 4 || got.LoRA.UseRSLoRA || got.LoRA.RankPattern != nil {
		t.Errorf("got r %d, alpha %v, rsLoRA %v, rank_pattern %v; want 4, 4, false, none", got.LoRA.R, got.LoRA.Alpha, got.LoRA.UseRSLoRA, got.LoRA.RankPattern)
	}
	sameDeltas(t, "UniformRank", got, ad)
}

// sameDeltas checks that got and want have the same modules and s·A·B.
func sameDeltas(t *testing.T, reason string, got, want *adapter.Adapter) {
	t.Helper()
	if !slices.Equal(got.Modules(), want.Modules()) {
		t.Fatalf("%s: got modules %q, want %q", reason, got.Modules(), want.Modules())
	}
	for _, m := range want.Modules() {
		w := delta(want, m)
		if d := maxDiff(delta(got, m), w); d > 1e-6*w.norm() {
			t.Errorf("%s: %s: delta differs by %g", reason, m, d)
		}
	}
}
