package adapter

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sharedModels is the folder of real models beside the project's root.
const sharedModels = "../../shared/models"

// realAdapterPath returns the shared real .onnx_adapter file.
func realAdapterPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(sharedModels, "onnx-adapter-gpt2", "two_lora_params.onnx_adapter")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("real adapter %s is missing: the project expects ../shared beside it (%v)", p, err)
	}
	return p
}

// seq returns n deterministic values that are exact in float16 and bfloat16.
func seq(n int, start, step float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = start + float32(i)*step
	}
	return out
}

// sampleLoRA returns a small LoRA adapter with two modules, one stored as
// float16, a bias and a trainable module weight.
func sampleLoRA() *Adapter {
	cfg := DefaultLoRAConfig(`.*q_proj`, `.*v_proj`)
	cfg.R = 2
	cfg.Alpha = 4
	cfg.TrainableBias = BiasLoRA
	cfg.TrainableModules = []string{`lm_head`}
	cfg.BaseModelName = "tiny-llama"
	a := NewLoRA(cfg)
	a.Weights["model.layers.0.self_attn.q_proj"] = LoRAWeights{
		A: NewTensor([]int64{3, 2}, seq(6, -1, 0.25)),
		B: NewTensor([]int64{2, 4}, seq(8, 0.5, -0.125)),
	}
	v := LoRAWeights{
		A: NewTensor([]int64{3, 2}, seq(6, 2, 0.5)),
		B: NewTensor([]int64{2, 5}, seq(10, -0.75, 0.0625)),
	}
	v.A.DType, v.B.DType = dtype.Float16, dtype.Float16
	a.Weights["model.layers.0.self_attn.v_proj"] = v
	a.Extra["model.layers.0.self_attn.q_proj.bias"] = NewTensor([]int64{4}, seq(4, 0.1, 0.1))
	a.Extra["lm_head.weight"] = NewTensor([]int64{2, 3}, seq(6, 1, 1))
	return a
}

// samplePrefix returns a small grouped-query prefix adapter.
func samplePrefix(projection bool) *Adapter {
	cfg := PrefixConfig{
		NumPrefixTokens:    3,
		NumAttentionHeads:  4,
		MultiQueryGroupNum: 2,
		NumHiddenLayers:    2,
		HiddenSize:         8,
		DType:              dtype.BFloat16,
		TaskType:           "CAUSAL_LM",
	}
	a := NewPrefix(cfg)
	tw := int64(cfg.TableWidth()) // 2·2·2·2 = 16
	if !projection {
		a.Prompt = NewTensor([]int64{3, tw}, seq(int(3*tw), -2, 0.125))
		a.Prompt.DType = dtype.BFloat16
		return a
	}
	a.Prefix.PrefixProjection = true
	a.Prefix.PrefixProjectionHiddenSize = 5
	a.Prompt = NewTensor([]int64{3, 8}, seq(24, -1, 0.0625))
	a.Projection = &PrefixProjection{
		W1: NewTensor([]int64{8, 5}, seq(40, -1, 0.05)),
		B1: NewTensor([]int64{5}, seq(5, 0, 0.5)),
		W2: NewTensor([]int64{5, tw}, seq(int(5*tw), 1, -0.03125)),
		B2: NewTensor([]int64{tw}, seq(int(tw), 0, 1)),
	}
	return a
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (-want +got):\n%s", path, diff(want, got))
	}
}

// diff shows the first differing lines of text, or the first differing
// byte of binary data.
func diff(want, got []byte) string {
	if bytes.IndexByte(want, 0) < 0 && bytes.IndexByte(got, 0) < 0 {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
		var b strings.Builder
		for i := 0; i < max(len(wl), len(gl)) && b.Len() < 2000; i++ {
			var w, g string
			if i < len(wl) {
				w = wl[i]
			}
			if i < len(gl) {
				g = gl[i]
			}
			if w != g {
				fmt.Fprintf(&b, "line %d:\n- %s\n+ %s\n", i+1, w, g)
			}
		}
		return b.String()
	}
	for i := 0; i < min(len(want), len(got)); i++ {
		if want[i] != got[i] {
			return fmt.Sprintf("first difference at byte %d: want %#02x, got %#02x (lengths %d and %d)", i, want[i], got[i], len(want), len(got))
		}
	}
	return fmt.Sprintf("lengths differ: want %d bytes, got %d", len(want), len(got))
}

// sameTensor reports how a and b differ: dtype (Undefined being float32),
// shape, or the bits of a value.
func sameTensor(a, b *Tensor) error {
	if storedAs(a.DType) != storedAs(b.DType) {
		return fmt.Errorf("dtype %s, want %s", storedAs(b.DType), storedAs(a.DType))
	}
	if !equalShape(a.Shape, b.Shape) {
		return fmt.Errorf("shape %v, want %v", b.Shape, a.Shape)
	}
	for i := range a.Data {
		if math.Float32bits(a.Data[i]) != math.Float32bits(b.Data[i]) {
			return fmt.Errorf("value %d is %v, want %v", i, b.Data[i], a.Data[i])
		}
	}
	return nil
}

// errContains checks err against a wanted substring ("" wants no error).
func errContains(err error, want string) error {
	switch {
	case want == "" && err != nil:
		return fmt.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		return fmt.Errorf("got no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		return fmt.Errorf("got error %q, want it to contain %q", err, want)
	case err != nil && !strings.HasPrefix(err.Error(), "adapter: "):
		return fmt.Errorf("error %q does not start with \"adapter: \"", err)
	}
	return nil
}
