package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// loraCase is a real model and an inject command line for it.
type loraCase struct {
	name   string
	model  string   // folder in shared/models
	inject []string // flags for inject
	// fused reports fused projections (--enable-lora), which an
	// .onnx_adapter file cannot hold.
	fused bool
	// tol bounds |got-want| / (1+|want|) between models that compute the
	// same function; mergeTol between an adapted model and its merge, which
	// rounds the merged weights to the model's type.
	tol, mergeTol float64
}

var loraCases = []loraCase{
	{name: "distilbert", model: "distilbert-optimum",
		inject: []string{"--target", ".*(q_lin|v_lin)", "--target", ".*classifier", "--bias", "lora", "--r", "2", "--alpha", "4", "--seed", "3"},
		tol:    1e-5, mergeTol: 1e-5},
	{name: "gpt2-past", model: "gpt2-past-torch16",
		inject: []string{"--target", `.*\.c_proj`, "--target", ".*c_fc", "--r", "4", "--alpha", "16", "--init", "gaussian"},
		tol:    1e-5, mergeTol: 1e-5},
	{name: "gpt2-past-fused", model: "gpt2-past-torch16",
		inject: []string{"--target", ".*c_attn", "--enable-lora", "q,v", "--target", ".*mlp.c_proj", "--enable-lora", "none", "--head-dim", "2", "--r", "2", "--alpha", "3"},
		fused:  true, tol: 1e-5, mergeTol: 1e-5},
	{name: "tiny-llama", model: "tiny-llama-genai-fp16",
		inject: []string{"--target", ".*(q|v)_proj", "--target", "lm_head", "--rslora", "--r", "4", "--alpha", "8"},
		tol:    1e-3, mergeTol: 3e-2},
	{name: "tiny-llama-fp16-factors", model: "tiny-llama-genai-fp16",
		inject: []string{"--target", ".*mlp.*", "--dtype", "float16", "--dropout", "0.1", "--trainable", ".*o_proj"},
		tol:    1e-3, mergeTol: 3e-2},
}

// modelFeeds returns inputs for one run of a shared model.
func modelFeeds(t *testing.T, model string) map[string]*ortrt.Tensor {
	t.Helper()
	must := func(x *ortrt.Tensor, err error) *ortrt.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	feeds := map[string]*ortrt.Tensor{}
	switch model {
	case "distilbert-optimum":
		feeds["input_ids"] = must(ortrt.NewInt64([]int64{1, 8}, []int64{101, 7592, 1010, 2088, 999, 102, 0, 0}))
		feeds["attention_mask"] = must(ortrt.NewInt64([]int64{1, 8}, []int64{1, 1, 1, 1, 1, 1, 0, 0}))
	case "gpt2-past-torch16":
		rng := rand.New(rand.NewPCG(1, 2))
		feeds["input_ids"] = must(ortrt.NewInt64([]int64{2, 1}, []int64{11, 7}))
		for i := range 12 {
			past := make([]float32, 2*2*2*3*2)
			for j := range past {
				past[j] = rng.Float32()*2 - 1
			}
			feeds[fmt.Sprintf("past_%d", i)] = must(ortrt.NewFloat32([]int64{2, 2, 2, 3, 2}, past))
		}
	case "tiny-llama-genai-fp16":
		feeds["input_ids"] = must(ortrt.NewInt64([]int64{1, 3}, []int64{1, 450, 4996}))
		feeds["attention_mask"] = must(ortrt.NewInt64([]int64{1, 3}, []int64{1, 1, 1}))
		feeds["position_ids"] = must(ortrt.NewInt64([]int64{1, 3}, []int64{0, 1, 2}))
		for i := range 2 {
			for _, kv := range []string{"key", "value"} {
				feeds[fmt.Sprintf("past_key_values.%d.%s", i, kv)] = must(ortrt.NewFloat16([]int64{1, 1, 0, 16}, nil))
			}
		}
	default:
		t.Fatalf("no inputs for model %s", model)
	}
	return feeds
}

// runModel runs the model at path once on feeds and returns every output
// as float32 values by name.
func runModel(t *testing.T, path string, feeds map[string]*ortrt.Tensor) map[string][]float32 {
	t.Helper()
	sess, err := ortrt.NewSession(path, ortrt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer sess.Close()
	res, err := sess.Run(feeds, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string][]float32{}
	for name, v := range res {
		out[name] = v.ToFloat32()
	}
	return out
}

// maxDiff returns the largest |got-want| / (1+|want|) over all outputs,
// and an error where the outputs differ in names or sizes.
func maxDiff(got, want map[string][]float32) (float64, error) {
	if !reflect.DeepEqual(sortedNames(got), sortedNames(want)) {
		return 0, fmt.Errorf("got outputs %q, want %q", sortedNames(got), sortedNames(want))
	}
	worst := 0.0
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			return 0, fmt.Errorf("output %q: got %d values, want %d", name, len(g), len(w))
		}
		for i := range w {
			d := math.Abs(float64(g[i])-float64(w[i])) / (1 + math.Abs(float64(w[i])))
			if math.IsNaN(d) {
				return 0, fmt.Errorf("output %q[%d]: got %v, want %v", name, i, g[i], w[i])
			}
			worst = max(worst, d)
		}
	}
	return worst, nil
}

func sortedNames[V any](m map[string]V) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// wantSame fails the test where got and want differ by more than tol.
func wantSame(t *testing.T, reason string, got, want map[string][]float32, tol float64) {
	t.Helper()
	d, err := maxDiff(got, want)
	if err != nil {
		t.Errorf("%s: %v", reason, err)
	} else if d > tol {
		t.Errorf("%s: outputs differ by %.3g, want at most %.3g", reason, d, tol)
	}
}

// runOK runs a command line and fails the test where it fails; it returns
// what the command printed.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("%s: got status %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

// setRandomB loads the adapted model in, gives every LoRA B random values
// from seed, and saves it to out (with external data where in has it).
func setRandomB(t *testing.T, in, out string, seed uint64) {
	t.Helper()
	m, err := graph.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sites, err := rewrite.Sites(m)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, s := range sites {
		b := m.Initializer(s.B)
		v := make([]float32, graph.NumElements(b.Dims))
		for i := range v {
			v[i] = rng.Float32()*2 - 1
		}
		if err := graph.SetFloat32s(b, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Save(out, graph.SaveOptions{ExternalData: hasExternalData(m)}); err != nil {
		t.Fatal(err)
	}
}

// fileSums returns a checksum of each file in dir, by name.
func fileSums(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	for _, name := range listDir(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		sums[name] = sha256.Sum256(b)
	}
	return sums
}

// tempPaths replaces dir in s with $TMP, for golden files.
func tempPaths(s, dir string) string {
	return strings.ReplaceAll(s, dir, "$TMP")
}

// summaryLine is the format of print_trainable_parameters.
var summaryLine = regexp.MustCompile(`^trainable params: [\d,]+ \|\| all params: [\d,]+ \|\| trainable%: \d+\.\d{4}$`)

// TestInjectRealModels injects LoRA into the real models: the adapted
// model computes what the base does (B starts at zero), keeps external
// data where the base has it, and the base is not changed.
func TestInjectRealModels(t *testing.T) {
	needORT(t)
	for _, c := range loraCases {
		t.Run(c.name, func(t *testing.T) {
			base := sharedModel(t, c.model)
			before := fileSums(t, filepath.Dir(base))
			dir := t.TempDir()
			out := filepath.Join(dir, "adapted.onnx")
			stdout := runOK(t, append([]string{"inject", base, "-o", out}, c.inject...)...)
			golden(t, filepath.Join("inject", c.name+".txt"), tempPaths(stdout, dir))
			if first, _, _ := strings.Cut(stdout, "\n"); !summaryLine.MatchString(first) {
				t.Errorf("got first line %q, want the trainable-parameters summary", first)
			}
			if !reflect.DeepEqual(fileSums(t, filepath.Dir(base)), before) {
				t.Errorf("inject changed the files of %s", c.model)
			}
			_, baseExternal := os.Stat(base + ".data")
			_, outExternal := os.Stat(out + ".data")
			if (baseExternal == nil) != (outExternal == nil) {
				t.Errorf("base has external data: %v; output has: %v", baseExternal == nil, outExternal == nil)
			}
			feeds := modelFeeds(t, c.model)
			wantSame(t, "adapted vs base", runModel(t, out, feeds), runModel(t, base, feeds), c.tol)

			// The same command again writes the same bytes.
			again := filepath.Join(t.TempDir(), "adapted.onnx")
			runOK(t, append([]string{"inject", base, "-o", again}, c.inject...)...)
			for _, suffix := range []string{"", ".data"} {
				a, _ := os.ReadFile(out + suffix)
				b, _ := os.ReadFile(again + suffix)
				if !bytes.Equal(a, b) {
					t.Errorf("inject is not deterministic: two runs wrote different adapted.onnx%s", suffix)
				}
			}
		})
	}
}

// TestInjectAsInputs checks that an --as-inputs model, fed nothing,
// computes what the base does.
func TestInjectAsInputs(t *testing.T) {
	needORT(t)
	for _, model := range []string{"distilbert-optimum", "tiny-llama-genai-fp16"} {
		base := sharedModel(t, model)
		out := filepath.Join(t.TempDir(), "inputs.onnx")
		stdout := runOK(t, "inject", base, "-o", out, "--target", ".*", "--as-inputs")
		if !strings.Contains(stdout, "A and B are graph inputs") {
			t.Errorf("%s: got stdout %q, want a note on graph inputs", model, stdout)
		}
		feeds := modelFeeds(t, model)
		wantSame(t, model+" as inputs vs base", runModel(t, out, feeds), runModel(t, base, feeds), 1e-3)
	}
}

// TestInjectErrors checks that each bad command line fails with one line
// naming the fault, and leaves no output file.
func TestInjectErrors(t *testing.T) {
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	gpt2 := sharedModel(t, "gpt2-past-torch16")
	dir := t.TempDir()
	// A private copy of a model, to try overwriting it.
	own := filepath.Join(dir, "own")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.onnx", "model.onnx.data"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(llama), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(own, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ownModel := filepath.Join(own, "model.onnx")
	ownSums := fileSums(t, own)
	out := filepath.Join(dir, "sub", "out.onnx")

	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"target matches nothing", []string{llama, "-o", out, "--target", "nomatch.*"}, 1,
			[]string{`"nomatch.*"`, "matched no linear layer", "model.layers.0.attn.q_proj", "lm_head"}},
		{"bad regex", []string{llama, "-o", out, "--target", "(("}, 1, []string{`"(("`}},
		{"no target", []string{llama, "-o", out}, 2, []string{"--target or --modules is required"}},
		{"no -o", []string{llama, "--target", ".*"}, 2, []string{"-o OUT is required"}},
		{"no model", []string{"-o", out, "--target", ".*"}, 2, []string{"want one MODEL, got 0"}},
		{"missing model", []string{filepath.Join(dir, "missing.onnx"), "-o", out, "--target", ".*"}, 1, []string{"missing.onnx", "no such file"}},
		{"bad r", []string{llama, "-o", out, "--target", ".*", "--r", "0"}, 2, []string{"--r must be positive"}},
		{"bad alpha", []string{llama, "-o", out, "--target", ".*", "--alpha", "-1"}, 2, []string{"--alpha must be positive"}},
		{"bad dropout", []string{llama, "-o", out, "--target", ".*", "--dropout", "1"}, 2, []string{"--dropout must be in [0, 1)"}},
		{"bad bias", []string{llama, "-o", out, "--target", ".*", "--bias", "some"}, 2, []string{`--bias must be none, lora or all, got "some"`}},
		{"bad init", []string{llama, "-o", out, "--target", ".*", "--init", "zeros"}, 2, []string{`--init must be kaiming, gaussian, pissa, pissa_niter_N, olora or loftq`}},
		{"bad dtype", []string{llama, "-o", out, "--target", ".*", "--dtype", "int8"}, 2, []string{`--dtype: want float32, float16 or bfloat16, got "int8"`}},
		{"bad trainable", []string{llama, "-o", out, "--target", ".*", "--trainable", "(("}, 1, []string{"trainable_modules", `"(("`}},
		{"enable-lora without head-dim", []string{gpt2, "-o", out, "--target", ".*c_attn", "--enable-lora", "q,v"}, 2, []string{"--enable-lora needs --head-dim"}},
		{"enable-lora count", []string{gpt2, "-o", out, "--target", ".*c_attn", "--target", ".*c_fc", "--enable-lora", "q", "--enable-lora", "k", "--enable-lora", "v", "--head-dim", "2"}, 2,
			[]string{"--enable-lora is given 3 times for 2 --target"}},
		{"enable-lora does not split", []string{gpt2, "-o", out, "--target", ".*c_proj", "--enable-lora", "q,v", "--head-dim", "2"}, 1,
			[]string{"h.0.attn.c_proj", "do not split into the 3 parts"}},
		{"overwrite the input", []string{ownModel, "-o", ownModel, "--target", ".*q_proj"}, 1, []string{"would overwrite the input", ownModel}},
		{"overwrite the input's data", []string{ownModel, "-o", filepath.Join(own, "model.onnx.data"), "--target", ".*q_proj"}, 1, []string{"would overwrite the input"}},
		{"output is a folder", []string{llama, "-o", own, "--target", ".*q_proj"}, 1, []string{"is a directory"}},
	} {
		stdout, errOut, code := cli(t, append([]string{"inject"}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, test.code, test.parts...)
		if _, err := os.Stat(filepath.Dir(out)); err == nil {
			t.Errorf("%s: left %q behind", test.reason, listDir(t, filepath.Dir(out)))
		}
	}
	if !reflect.DeepEqual(fileSums(t, own), ownSums) {
		t.Errorf("the input model's files changed")
	}
}

func TestParseEnableLoRA(t *testing.T) {
	for _, test := range []struct {
		values  []string
		targets int
		want    adapter.EnableLoRAList
		err     string
	}{
		{nil, 1, adapter.EnableLoRAList{}, ""},
		{[]string{"q,v"}, 1, adapter.EnableLoRAList{All: []bool{true, false, true}}, ""},
		{[]string{"V, K"}, 2, adapter.EnableLoRAList{All: []bool{false, true, true}}, ""},
		{[]string{"false,true,true,false"}, 1, adapter.EnableLoRAList{All: []bool{false, true, true, false}}, ""},
		{[]string{"0,1"}, 1, adapter.EnableLoRAList{All: []bool{false, true}}, ""},
		{[]string{"q", "none"}, 2, adapter.EnableLoRAList{PerTarget: [][]bool{{true, false, false}, nil}}, ""},
		{[]string{"none"}, 1, adapter.EnableLoRAList{}, `"none" is neither`},
		{[]string{"q,1"}, 1, adapter.EnableLoRAList{}, "mixes letters and flags"},
		{[]string{"0,0"}, 1, adapter.EnableLoRAList{}, "enables no part"},
		{[]string{"q", "k"}, 3, adapter.EnableLoRAList{}, "given 2 times for 3 --target"},
	} {
		got, err := parseEnableLoRA(test.values, test.targets)
		switch {
		case test.err != "" && (err == nil || !strings.Contains(err.Error(), test.err)):
			t.Errorf("%q: got error %v, want one containing %q", test.values, err, test.err)
		case test.err == "" && err != nil:
			t.Errorf("%q: unexpected error %v", test.values, err)
		case test.err == "" && !reflect.DeepEqual(got, test.want):
			t.Errorf("%q: got %+v, want %+v", test.values, got, test.want)
		}
	}
}
