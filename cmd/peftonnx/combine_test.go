package main

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// combineFixture writes the models/ tiny LLaMA to dir/base.onnx and two
// HF PEFT adapters of it: a1 (r 2, alpha 4: scaling 2) on q_proj and
// v_proj of both layers, a2 (r 2, alpha 8, rsLoRA: scaling 4√2) on the
// same and on layer 0's down_proj.
func combineFixture(t *testing.T, dir string) (base, a1, a2 string) {
	t.Helper()
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	base = filepath.Join(dir, "base.onnx")
	if err := m.Save(base, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 12))
	factors := func(in, out int) adapter.LoRAWeights {
		fill := func(n int) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(rng.NormFloat64() * 0.3)
			}
			return v
		}
		return adapter.LoRAWeights{A: adapter.NewTensor([]int64{int64(in), 2}, fill(in*2)), B: adapter.NewTensor([]int64{2, int64(out)}, fill(2*out))}
	}
	save := func(name string, alpha float64, rslora bool, down bool) string {
		cfg := adapter.DefaultLoRAConfig(`.*(q|v|down)_proj`)
		cfg.R, cfg.Alpha, cfg.UseRSLoRA = 2, alpha, rslora
		ad := adapter.NewLoRA(cfg)
		for _, l := range []string{"0", "1"} {
			ad.Weights["model.layers."+l+".self_attn.q_proj"] = factors(16, 16)
			ad.Weights["model.layers."+l+".self_attn.v_proj"] = factors(16, 8)
		}
		if down {
			ad.Weights["model.layers.0.mlp.down_proj"] = factors(40, 16)
		}
		p := filepath.Join(dir, name)
		if err := adapter.SaveDir(p, ad); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return base, save("a1", 4, false, false), save("a2", 8, true, true)
}

// deltaOf returns module's s·A·B in ad, [in][out], in float64.
func deltaOf(ad *adapter.Adapter, module string) [][]float64 {
	w := ad.Weights[module]
	in, r, out := int(w.A.Shape[0]), int(w.A.Shape[1]), int(w.B.Shape[1])
	s := ad.LoRA.ScalingFor(module)
	d := make([][]float64, in)
	for i := range d {
		d[i] = make([]float64, out)
		for j := range d[i] {
			for k := 0; k < r; k++ {
				d[i][j] += s * float64(w.A.Data[i*r+k]) * float64(w.B.Data[k*out+j])
			}
		}
	}
	return d
}

// TestCombine runs combine on two HF PEFT adapters: cat's result is the
// weighted sum of their deltas, which merge and apply read; the other
// formats hold the same deltas; DARE is reproducible by its seed; the
// inputs are not changed.
func TestCombine(t *testing.T) {
	dir := t.TempDir()
	base, a1, a2 := combineFixture(t, dir)
	before := map[string][32]byte{}
	for _, p := range []string{a1, a2} {
		for name, sum := range fileSums(t, p) {
			before[filepath.Join(p, name)] = sum
		}
	}

	out := filepath.Join(dir, "out")
	stdout := runOK(t, "combine", a1, a2, "-o", out, "--method", "cat", "--weights", "0.7,-1.3")
	want := "$TMP/a1: LoRA r=2 alpha=4, 4 modules, scaling 2, weight 0.7\n" +
		"$TMP/a2: LoRA r=2 alpha=8 rsLoRA, 5 modules, scaling 5.65685, weight -1.3\n" +
		"wrote $TMP/out (HF PEFT directory): cat of 2 adapters, 5 LoRA modules, r=4 (rank_pattern for 1 module), scaling 1, 560 params\n"
	if got := tempPaths(stdout, dir); got != want {
		t.Errorf("got stdout\n%s\nwant\n%s", got, want)
	}
	ad1, ad2 := loadAdapterT(t, a1), loadAdapterT(t, a2)
	got := loadAdapterT(t, out)
	for _, m := range got.Modules() {
		d := deltaOf(got, m)
		worst := 0.0
		for i := range d {
			for j := range d[i] {
				want := -1.3 * deltaOf(ad2, m)[i][j]
				if _, ok := ad1.Weights[m]; ok {
					want += 0.7 * deltaOf(ad1, m)[i][j]
				}
				worst = math.Max(worst, math.Abs(d[i][j]-want))
			}
		}
		if worst > 1e-5 {
			t.Errorf("cat: %s: delta differs from 0.7·Δ1 - 1.3·Δ2 by %g", m, worst)
		}
	}

	// merge folds it into the base: W + Σ w·s·A·B.
	merged := filepath.Join(dir, "merged.onnx")
	runOK(t, "merge", base, "--adapter", out, "-o", merged)
	w0, err := models.WeightsOf(loadModel(t, base))
	if err != nil {
		t.Fatal(err)
	}
	w1, err := models.WeightsOf(loadModel(t, merged))
	if err != nil {
		t.Fatal(err)
	}
	const q = "model.layers.1.self_attn.q_proj"
	d1, d2 := deltaOf(ad1, q), deltaOf(ad2, q)
	for i := 0; i < 16; i++ {
		for j := 0; j < 16; j++ {
			want := float64(w0[q+".weight"].Data[i*16+j]) + 0.7*d1[i][j] - 1.3*d2[i][j]
			if g := float64(w1[q+".weight"].Data[i*16+j]); math.Abs(g-want) > 1e-5 {
				t.Fatalf("merged %s[%d,%d] = %v, want W + 0.7·Δ1 - 1.3·Δ2 = %v", q, i, j, g, want)
			}
		}
	}
	runOK(t, "apply", base, "--adapter", out, "-o", filepath.Join(dir, "applied.onnx"))

	// The other layouts hold the same deltas; PaddleNLP's pads down_proj.
	for _, test := range []struct {
		out, format, note string
	}{
		{filepath.Join(dir, "out.onnx_adapter"), "", "(.onnx_adapter)"},
		{filepath.Join(dir, "named-freely"), "onnx_adapter", "(.onnx_adapter)"},
		{filepath.Join(dir, "paddle"), "paddle", "(PaddleNLP directory): cat of 2 adapters, 5 LoRA modules, r=4 (modules of smaller rank padded with zeros"},
	} {
		args := []string{"combine", a1, a2, "-o", test.out, "--method", "cat", "--weights", "0.7,-1.3"}
		if test.format != "" {
			args = append(args, "--format", test.format)
		}
		if stdout := runOK(t, args...); !strings.Contains(stdout, test.note) {
			t.Errorf("%s: stdout %q does not say %q", test.out, stdout, test.note)
		}
		other := loadAdapterT(t, test.out)
		for _, m := range got.Modules() {
			a, b := deltaOf(other, m), deltaOf(got, m)
			for i := range a {
				for j := range a[i] {
					if math.Abs(a[i][j]-b[i][j]) > 1e-6 {
						t.Fatalf("%s: %s: delta differs from the HF directory's", test.out, m)
					}
				}
			}
		}
	}

	// Every layout is read as an input too.
	runOK(t, "combine", filepath.Join(dir, "paddle"), filepath.Join(dir, "out.onnx_adapter"), a1, "-o", filepath.Join(dir, "again"), "--method", "svd")

	// The other methods run, and DARE's seed decides its masks.
	for _, args := range [][]string{
		{"--method", "linear"},
		{"--method", "svd", "--rank", "3"},
		{"--method", "ties", "--density", "0.5", "--majority-sign", "frequency"},
		{"--method", "magnitude_prune", "--density", "0.5"},
	} {
		runOK(t, append([]string{"combine", a1, a2, "-o", filepath.Join(dir, args[1])}, args...)...)
	}
	dare := func(name string, seed string) []byte {
		p := filepath.Join(dir, name)
		runOK(t, "combine", a1, a2, "-o", p, "--method", "dare_ties", "--density", "0.4", "--seed", seed)
		b, err := os.ReadFile(filepath.Join(p, adapter.HFWeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if first, again := dare("dare1", "5"), dare("dare2", "5"); !bytes.Equal(first, again) {
		t.Errorf("dare_ties: the same --seed wrote different weights")
	}
	if first, other := dare("dare3", "5"), dare("dare4", "6"); bytes.Equal(first, other) {
		t.Errorf("dare_ties: --seed 5 and 6 wrote the same weights")
	}

	for _, p := range []string{a1, a2} {
		for name, sum := range fileSums(t, p) {
			if before[filepath.Join(p, name)] != sum {
				t.Errorf("input %s changed", filepath.Join(p, name))
			}
		}
	}
}

// TestCombineOneAdapter checks that one adapter is combined by linear, as
// HF PEFT does, and says so.
func TestCombineOneAdapter(t *testing.T) {
	dir := t.TempDir()
	_, a1, _ := combineFixture(t, dir)
	out := filepath.Join(dir, "out")
	stdout := runOK(t, "combine", a1, "-o", out, "--method", "svd", "--rank", "1")
	if !strings.Contains(stdout, "note: one adapter is combined by linear") || !strings.Contains(stdout, ": linear of 1 adapter, 4 LoRA modules, r=2, scaling 1") {
		t.Errorf("got stdout %q", stdout)
	}
}

func loadAdapterT(t *testing.T, path string) *adapter.Adapter {
	t.Helper()
	ad, err := adapter.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return ad
}

// TestCombineErrors checks bad command lines and adapters that cannot be
// combined: one line naming the file or flag at fault, and no output.
func TestCombineErrors(t *testing.T) {
	dir := t.TempDir()
	_, a1, a2 := combineFixture(t, dir)
	edit := func(name, from, to string) string { // a copy of a1 with its config edited
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{adapter.HFConfigFile, adapter.HFWeightsFile} {
			b, err := os.ReadFile(filepath.Join(a1, f))
			if err != nil {
				t.Fatal(err)
			}
			if f == adapter.HFConfigFile {
				if !bytes.Contains(b, []byte(from)) {
					t.Fatalf("%s has no %s", f, from)
				}
				b = bytes.Replace(b, []byte(from), []byte(to), 1)
			}
			if err := os.WriteFile(filepath.Join(p, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	dora := filepath.Join(dir, "dora") // a1 with a DoRA magnitude per module
	ad, err := adapter.LoadDir(a1)
	if err != nil {
		t.Fatal(err)
	}
	ad.LoRA.UseDoRA = true
	for m, w := range ad.Weights {
		w.Magnitude = adapter.Zeros(w.B.Shape[1])
		ad.Weights[m] = w
	}
	if err := adapter.SaveDir(dora, ad); err != nil {
		t.Fatal(err)
	}
	bias := edit("lora-bias", `"use_dora": false`, `"use_dora": false, "lora_bias": true`)
	gpt2 := edit("gpt2", `"base_model_name_or_path": null`, `"base_model_name_or_path": "gpt2"`)
	llama := edit("llama", `"base_model_name_or_path": null`, `"base_model_name_or_path": "meta-llama/Llama-3.2-1B"`)
	rank4 := edit("rank4", `"r": 2`, `"r": 4`) // its files still hold rank 2

	prefix := filepath.Join(dir, "prefix")
	pc := adapter.PrefixConfig{NumPrefixTokens: 2, NumAttentionHeads: 4, MultiQueryGroupNum: 2, NumHiddenLayers: 2, HiddenSize: 16}
	pa := adapter.NewPrefix(pc)
	pa.Prompt = adapter.Zeros(2, int64(pc.EmbeddingWidth()))
	if err := adapter.SaveDir(prefix, pa); err != nil {
		t.Fatal(err)
	}
	wide := filepath.Join(dir, "wide") // q_proj at rank 3
	cfg := adapter.DefaultLoRAConfig(".*")
	cfg.R = 3
	wa := adapter.NewLoRA(cfg)
	wa.Weights["model.layers.0.self_attn.q_proj"] = adapter.LoRAWeights{A: adapter.Zeros(16, 3), B: adapter.Zeros(3, 16)}
	if err := adapter.SaveDir(wide, wa); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other") // q_proj [16, 12]: another base
	oa := adapter.NewLoRA(cfg)
	oa.Weights["model.layers.0.self_attn.q_proj"] = adapter.LoRAWeights{A: adapter.Zeros(16, 3), B: adapter.Zeros(3, 12)}
	if err := adapter.SaveDir(other, oa); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")

	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"no adapters", []string{"-o", out, "--method", "cat"}, 2, []string{"give at least one ADAPTER"}},
		{"no -o", []string{a1, a2, "--method", "cat"}, 2, []string{"-o OUT is required"}},
		{"no --method", []string{a1, a2, "-o", out}, 2, []string{"--method is required"}},
		{"bad method", []string{a1, a2, "-o", out, "--method", "mean"}, 2, []string{`unknown method "mean"`}},
		{"no density", []string{a1, a2, "-o", out, "--method", "ties"}, 2, []string{"ties needs --density"}},
		{"density 0", []string{a1, a2, "-o", out, "--method", "dare_linear", "--density", "0"}, 2, []string{"--density must be in (0, 1], got 0"}},
		{"density for cat", []string{a1, a2, "-o", out, "--method", "cat", "--density", "0.5"}, 2, []string{"--density applies to", "not cat"}},
		{"rank for linear", []string{a1, a2, "-o", out, "--method", "linear", "--rank", "2"}, 2, []string{"--rank applies to svd only"}},
		{"rank 0", []string{a1, a2, "-o", out, "--method", "svd", "--rank", "0"}, 2, []string{"--rank must be positive"}},
		{"seed for ties", []string{a1, a2, "-o", out, "--method", "ties", "--density", "0.5", "--seed", "1"}, 2, []string{"--seed applies to dare_linear and dare_ties only"}},
		{"sign for cat", []string{a1, a2, "-o", out, "--method", "cat", "--majority-sign", "total"}, 2, []string{"--majority-sign applies to ties and dare_ties only"}},
		{"bad sign", []string{a1, a2, "-o", out, "--method", "ties", "--density", "0.5", "--majority-sign", "most"}, 2, []string{`got "most"`}},
		{"weights count", []string{a1, a2, "-o", out, "--method", "cat", "--weights", "1"}, 2, []string{"--weights has 1 value for 2 adapters"}},
		{"bad weight", []string{a1, a2, "-o", out, "--method", "cat", "--weights", "1,x"}, 2, []string{`"x" is not a finite number`}},
		{"bad format", []string{a1, a2, "-o", out, "--method", "cat", "--format", "pt"}, 2, []string{"--format must be hf, onnx_adapter or paddle"}},
		{"missing adapter", []string{a1, filepath.Join(dir, "missing"), "-o", out, "--method", "cat"}, 1, []string{"missing", "no such file"}},
		{"prefix", []string{a1, prefix, "-o", out, "--method", "cat"}, 1, []string{prefix, "prefix adapter (PREFIX_TUNING)"}},
		{"DoRA", []string{a1, dora, "-o", out, "--method", "cat"}, 1, []string{dora, "is a DoRA adapter (use_dora)"}},
		{"lora_bias", []string{bias, a2, "-o", out, "--method", "cat"}, 1, []string{filepath.Join(bias, adapter.HFConfigFile), "lora_bias"}},
		{"different bases", []string{gpt2, a2, llama, "-o", out, "--method", "cat"}, 1, []string{gpt2, llama, `"gpt2"`, "one base"}},
		{"different shapes", []string{wide, other, "-o", out, "--method", "cat"}, 1, []string{wide, other, "[in 16, out 16]", "[in 16, out 12]"}},
		{"ranks for linear", []string{a1, wide, "-o", out, "--method", "linear"}, 1, []string{a1, wide, "has rank 2", "3 in", "cat and svd do not"}},
		{"rank disagrees with the file", []string{rank4, a2, "-o", out, "--method", "cat"}, 1, []string{rank4, "rank 2"}},
		{"-o is an input", []string{a1, a2, "-o", a2, "--method", "cat"}, 1, []string{"-o " + a2 + " is the input", "never changes"}},
		{"-o is a file", []string{a1, a2, "-o", file, "--method", "cat"}, 1, []string{file, "is a file"}},
		{"-o is a folder", []string{a1, a2, "-o", dir, "--method", "cat", "--format", "onnx_adapter"}, 1, []string{dir, "is a directory"}},
	} {
		stdout, errOut, code := cli(t, append([]string{"combine"}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, test.code, test.parts...)
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: left %s behind", test.reason, out)
		}
	}
}
