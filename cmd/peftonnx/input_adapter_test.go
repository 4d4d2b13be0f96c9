package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/npy"
)

// writeInputAdapter writes an .onnx_adapter file whose parameters are
// named after model inputs, as ONNX Runtime's adapter API feeds them.
func writeInputAdapter(t *testing.T, path string, params map[string]*adapter.Tensor) {
	t.Helper()
	f := &adapter.ONNXAdapterFile{Layout: adapter.LayoutORT, FormatVersion: 1}
	for _, name := range []string{"lora_param_a", "lora_param_b", "other"} {
		if params[name] == nil {
			continue
		}
		p, err := adapter.NewONNXParam(name, params[name])
		if err != nil {
			t.Fatal(err)
		}
		f.Params = append(f.Params, p)
	}
	if err := adapter.WriteONNXAdapter(path, f); err != nil {
		t.Fatal(err)
	}
}

// TestInputNamedAdapter runs, applies and merges an ONNX Runtime adapter
// file whose parameters are the model's inputs lora_param_a and
// lora_param_b (the model of pykeio/ort's tests: output = x·W +
// (x·A)·B), and checks every result against that formula computed here.
func TestInputNamedAdapter(t *testing.T) {
	needORT(t)
	base := sharedModel(t, "lora-inputs-ort")
	dir := t.TempDir()
	const r = 2
	a := make([]float32, 4*r)
	b := make([]float32, r*4)
	for i := range a {
		a[i] = float32(i%5) - 1.5
	}
	for i := range b {
		b[i] = 0.25 * float32(3-i%7)
	}
	ad := filepath.Join(dir, "ort.onnx_adapter")
	writeInputAdapter(t, ad, map[string]*adapter.Tensor{
		"lora_param_a": {DType: dtype.Float32, Shape: []int64{4, r}, Data: a},
		"lora_param_b": {DType: dtype.Float32, Shape: []int64{r, 4}, Data: b},
	})
	x := make([]float32, 16)
	for i := range x {
		x[i] = float32(i%3) - 0.5
	}
	xs := writeNpy(t, dir, "x.npy", []int64{4, 4}, x)
	// W is the model's weight_x: 1, 2, …, 16 row-major.
	want := make([]float64, 16)
	for i := 0; i < 4; i++ {
		for j := 0; j < 4; j++ {
			s := 0.0
			for k := 0; k < 4; k++ {
				s += float64(x[i*4+k]) * float64(k*4+j+1)
				for q := 0; q < r; q++ {
					s += float64(x[i*4+k]) * float64(a[k*r+q]) * float64(b[q*4+j])
				}
			}
			want[i*4+j] = s
		}
	}
	check := func(what, model string, extra ...string) {
		t.Helper()
		out := filepath.Join(dir, strings.ReplaceAll(what, " ", "-"))
		args := append([]string{"run", model, "--input", "input=" + xs, "--output-dir", out, "--threads", "1"}, extra...)
		if _, stderr, code := cli(t, args...); code != 0 {
			t.Fatalf("%s: status %d, %s", what, code, stderr)
		}
		arr, err := npy.ReadFile(filepath.Join(out, "output.npy"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := npy.Values[float32](arr)
		for i := range want {
			if math.Abs(float64(got[i])-want[i]) > 1e-4*(1+math.Abs(want[i])) {
				t.Fatalf("%s: output[%d] = %v, want x·W + x·A·B = %v", what, i, got[i], want[i])
			}
		}
	}
	check("run adapter", base, "--adapter", ad)

	applied := filepath.Join(dir, "applied.onnx")
	if out := runOK(t, "apply", base, "--adapter", ad, "-o", applied); !strings.Contains(out, "defaults of the inputs lora_param_a, lora_param_b") {
		t.Errorf("apply printed %q", out)
	}
	check("applied", applied)

	merged := filepath.Join(dir, "merged.onnx")
	if out := runOK(t, "merge", base, "--adapter", ad, "-o", merged); !strings.Contains(out, "1 nodes (4 before)") {
		t.Errorf("merge printed %q", out)
	}
	check("merged", merged)
	m := loadModel(t, merged)
	if len(m.Graph().Input) != 1 || m.Input("lora_param_a") != nil || m.Initializer("lora_param_b") != nil {
		t.Errorf("the merged model keeps the factor inputs: %d inputs", len(m.Graph().Input))
	}

	// A parameter of the wrong element type is named; a file with a name
	// that is no input is read as a LoRA file, and says it holds none.
	bad := filepath.Join(dir, "bad.onnx_adapter")
	writeInputAdapter(t, bad, map[string]*adapter.Tensor{
		"lora_param_a": {DType: dtype.Float16, Shape: []int64{4, r}, Data: a},
		"lora_param_b": {DType: dtype.Float32, Shape: []int64{r, 4}, Data: b},
	})
	o, e, code := cli(t, "run", base, "--adapter", bad, "--input", "input="+xs, "--output-dir", filepath.Join(dir, "bad"))
	wantError(t, "float16 parameter", o, e, code, 1, `adapter parameter "lora_param_a" is float16; input "lora_param_a"`, "is float32")
	other := filepath.Join(dir, "other.onnx_adapter")
	writeInputAdapter(t, other, map[string]*adapter.Tensor{"other": {DType: dtype.Float32, Shape: []int64{4, r}, Data: a}})
	o, e, code = cli(t, "merge", base, "--adapter", other, "-o", filepath.Join(dir, "x.onnx"))
	wantError(t, "no input of that name", o, e, code, 1, "holds no LoRA parameters")
}
