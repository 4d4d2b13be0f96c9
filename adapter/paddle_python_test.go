package adapter

import (
	"encoding/json"
	"fmt"
	"github.com/peftonnx/peftonnx/dtype"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// findNumpy returns a Python interpreter that can import numpy, or skips
// the test.
func findNumpy(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if err := exec.Command(py, "-c", "import numpy").Run(); err == nil {
			return py
		}
	}
	t.Skip("no python3 with numpy here (Debian: apt-get install python3-numpy, or scripts/install-test-deps.sh); skipping the checks against files Python writes and reads")
	return ""
}

// checkPaddleMatchesHF loads each PaddleNLP directory that
// testdata/paddle/make_dirs.py writes and the HF PEFT directory of the
// same weights: the adapters must hold bit-identical tensors and
// configs that agree.
func checkPaddleMatchesHF(t *testing.T, root string) {
	t.Helper()
	for _, name := range []string{"lora", "prefix", "prefix_proj"} {
		paddle, err := LoadDir(filepath.Join(root, name+"_paddle"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		hf, err := LoadDir(filepath.Join(root, name+"_hf"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Run(name, func(t *testing.T) { sameAdapter(t, hf, paddle) })
		if name == "lora" {
			p, h := paddle.LoRA, hf.LoRA
			if p.R != h.R || p.Alpha != h.Alpha || p.Dropout != h.Dropout || p.TrainableBias != h.TrainableBias || p.BaseModelName != h.BaseModelName {
				t.Errorf("%s: configs disagree:\npaddle %+v\nhf     %+v", name, p, h)
			}
			for _, m := range hf.Modules() {
				if p.MatchTarget(m) < 0 || h.MatchTarget(m) < 0 {
					t.Errorf("%s: module %s is a target of paddle %v, hf %v", name, m, p.MatchTarget(m) >= 0, h.MatchTarget(m) >= 0)
				}
			}
			if len(paddle.Weights) != 3 || len(paddle.Extra) != 2 {
				t.Errorf("%s: %d modules and %d extra tensors, want 3 and 2", name, len(paddle.Weights), len(paddle.Extra))
			}
			continue
		}
		p, h := paddle.Prefix, hf.Prefix
		if p.NumPrefixTokens != h.NumPrefixTokens || p.NumHiddenLayers != h.NumHiddenLayers || p.KVHeads() != h.KVHeads() ||
			p.HeadDim() != h.HeadDim() || p.PrefixProjection != h.PrefixProjection || p.PrefixProjectionHiddenSize != h.PrefixProjectionHiddenSize {
			t.Errorf("%s: configs disagree:\npaddle %+v\nhf     %+v", name, p, h)
		}
		if (name == "prefix_proj") != (paddle.Projection != nil) {
			t.Errorf("%s: projection %v", name, paddle.Projection != nil)
		}
	}
}

// TestLoadDirPaddleFixture reads the committed directories of
// testdata/paddle/p4 (made by make_dirs.py with CPython 3.11 and numpy
// 1.24), so that the PaddleNLP layout is checked where Python is missing.
func TestLoadDirPaddleFixture(t *testing.T) {
	checkPaddleMatchesHF(t, filepath.Join("testdata", "paddle", "p4"))
}

// TestLoadDirPaddleFromPython has Python write PaddleNLP directories with
// pickle.dump at protocols 2 and 4 (a dict with paddle.save's name table,
// and an OrderedDict without, as the merge_tensor_parallel save writes),
// and checks that each loads to the adapter its HF PEFT twin loads to.
func TestLoadDirPaddleFromPython(t *testing.T) {
	py := findNumpy(t)
	for _, args := range [][]string{{"--protocol", "2"}, {"--protocol", "3"}, {"--protocol", "4"}, {"--protocol", "4", "--ordered"}} {
		name := fmt.Sprint(args)
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			cmd := append([]string{filepath.Join("testdata", "paddle", "make_dirs.py")}, args...)
			if out, err := exec.Command(py, append(cmd, root)...).CombinedOutput(); err != nil {
				t.Fatalf("make_dirs.py: %v\n%s", err, out)
			}
			checkPaddleMatchesHF(t, root)
		})
	}
}

// pythonCheckPaddle is a Python program that reads a directory SavePaddleDir
// wrote as PaddleNLP would (pickle.load, json.load, numpy.load) and prints
// what it found as JSON: each state-dict entry's dtype, shape and values,
// the config, and for a prefix how far pre_caches.npy is from PaddleNLP's
// own formula applied to the saved encoder.
const pythonCheckPaddle = `
import json, os, pickle, sys
import numpy as np
d = sys.argv[1]
out = {"state": {}, "files": sorted(os.listdir(d))}
def floats(v):
    if v.dtype == np.uint16:  # paddle's bfloat16
        return (v.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return v.astype(np.float64)
weights = [f for f in out["files"] if f.endswith(".pdparams")][0]
with open(os.path.join(d, weights), "rb") as f:
    state = pickle.load(f)
out["type"] = type(state).__name__
names = state.pop("StructuredToParameterName@@")
assert sorted(names) == sorted(state), (names, list(state))
for k, v in state.items():
    assert isinstance(v, np.ndarray) and v.flags["C_CONTIGUOUS"], k
    out["state"][k] = {"dtype": v.dtype.name, "shape": list(v.shape), "values": floats(v).ravel().tolist()}
cfgname = [f for f in out["files"] if f.endswith("_config.json")][0]
with open(os.path.join(d, cfgname)) as f:
    out["config"] = json.load(f)
if "pre_caches.npy" in out["files"]:
    c = out["config"]
    caches = np.load(os.path.join(d, "pre_caches.npy"))
    P, L, H = c["num_prefix_tokens"], c["num_hidden_layers"], c["multi_query_group_num"] or c["num_attention_heads"]
    D = c["hidden_size"] // c["num_attention_heads"]
    e = floats(state["0.weight"])
    if c["prefix_projection"]:
        e = np.tanh(e @ state["1.weight"] + state["1.bias"]) @ state["3.weight"] + state["3.bias"]
    want = e.reshape(P, 2, L, H, D).transpose(2, 1, 3, 0, 4)  # PrefixModelForCausalLM.save_pretrained
    out["pre_caches"] = {"dtype": caches.dtype.name, "shape": list(caches.shape),
                         "max_error": float(np.abs(floats(caches) - want).max())}
print(json.dumps(out))
`

// TestPythonReadsSavePaddleDir saves LoRA and prefix adapters with
// SavePaddleDir and has Python read them the way PaddleNLP does: the
// state dict must hold PaddleNLP's keys with the adapter's values in
// paddle's layouts, and pre_caches.npy must be what PaddleNLP's
// save_pretrained computes from the saved prefix encoder.
func TestPythonReadsSavePaddleDir(t *testing.T) {
	py := findNumpy(t)
	type entry struct {
		DType  string    `json:"dtype"`
		Shape  []int64   `json:"shape"`
		Values []float64 `json:"values"`
	}
	var got struct {
		Type      string           `json:"type"`
		Files     []string         `json:"files"`
		State     map[string]entry `json:"state"`
		Config    map[string]any   `json:"config"`
		PreCaches *struct {
			DType    string  `json:"dtype"`
			Shape    []int64 `json:"shape"`
			MaxError float64 `json:"max_error"`
		} `json:"pre_caches"`
	}
	read := func(a *Adapter) {
		t.Helper()
		dir := t.TempDir()
		if err := SavePaddleDir(dir, a); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, "-c", pythonCheckPaddle, dir).CombinedOutput()
		if err != nil {
			t.Fatalf("Python could not read the directory: %v\n%s", err, out)
		}
		got.PreCaches = nil
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	check := func(key string, want *Tensor, dtype string) {
		t.Helper()
		e, ok := got.State[key]
		if !ok {
			t.Errorf("Python found no %q (keys %v)", key, reflect.ValueOf(got.State).MapKeys())
			return
		}
		vals := make([]float64, len(want.Data))
		for i, v := range want.Data {
			vals[i] = float64(v)
		}
		if e.DType != dtype || !reflect.DeepEqual(e.Shape, want.Shape) || !reflect.DeepEqual(e.Values, vals) {
			t.Errorf("%s: Python read %s %v %v, want %s %v %v", key, e.DType, e.Shape, e.Values, dtype, want.Shape, vals)
		}
	}

	a := paddleLoRA()
	read(a)
	if got.Type != "dict" || !reflect.DeepEqual(got.Files, []string{PaddleLoRAConfigFile, PaddleLoRAWeightsFile}) || len(got.State) != 8 {
		t.Errorf("Python found a %s, files %v and %d entries; want a dict, the two files and 8 entries", got.Type, got.Files, len(got.State))
	}
	dtypes := map[dtype.Type]string{dtype.Float32: "float32", dtype.Float16: "float16", dtype.BFloat16: "uint16"}
	for _, m := range a.Modules() {
		w := a.Weights[m]
		check(m+".lora_A", w.A, dtypes[w.A.DType])
		check(m+".lora_B", w.B, dtypes[w.B.DType])
	}
	check("model.layers.0.self_attn.q_proj.bias", a.Extra["model.layers.0.self_attn.q_proj.bias"], "float32")
	check("model.layers.0.self_attn.q_proj.weight", a.Extra["model.layers.0.self_attn.q_proj.weight"].Transpose(), "float32")
	for k, v := range map[string]any{"r": 2.0, "lora_alpha": 4.0, "scaling": 2.0, "trainable_bias": "lora", "tensor_parallel_degree": -1.0} {
		if !reflect.DeepEqual(got.Config[k], v) {
			t.Errorf("lora_config.json: Python read %q = %v, want %v", k, got.Config[k], v)
		}
	}

	for _, p := range []*Adapter{samplePrefix(false), paddlePrefixProjection()} {
		read(p)
		c := p.Prefix
		if got.PreCaches == nil {
			t.Fatalf("no pre_caches.npy among %v", got.Files)
		}
		want := []int64{int64(c.NumHiddenLayers), 2, int64(c.KVHeads()), int64(c.NumPrefixTokens), int64(c.HeadDim())}
		// bfloat16 has 8 bits of precision; the projection is computed in float64 and rounded to float32.
		tol := map[dtype.Type]float64{dtype.BFloat16: 0, dtype.Float32: 1e-5}[c.DType]
		if !reflect.DeepEqual(got.PreCaches.Shape, want) || got.PreCaches.MaxError > tol {
			t.Errorf("pre_caches.npy: Python read %+v, want shape %v within %g of PaddleNLP's formula", *got.PreCaches, want, tol)
		}
		if p.Projection == nil {
			continue
		}
		check("0.weight", p.Prompt, "float32")
		check("1.weight", p.Projection.W1, "float32")
		check("1.bias", p.Projection.B1, "float32")
	}
}
