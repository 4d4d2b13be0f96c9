package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/npy"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// needORT skips a test where the ONNX Runtime library cannot be found.
func needORT(t *testing.T) {
	t.Helper()
	if _, err := ortrt.FindLibrary(); err != nil {
		t.Skipf("no ONNX Runtime library (%v); run scripts/fetch-ort.sh or set %s", err, ortrt.LibraryEnv)
	}
}

// writeNpy writes an array into dir and returns its path.
func writeNpy[T npy.Elem](t *testing.T, dir, name string, shape []int64, values []T) string {
	t.Helper()
	a, err := npy.New(shape, values)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := npy.WriteFile(p, a); err != nil {
		t.Fatal(err)
	}
	return p
}

// listDir returns the names in dir, or nil when it does not exist.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// distilbertInputs writes input_ids and attention_mask of shape [1, 8].
func distilbertInputs(t *testing.T, dir string) (ids, mask string) {
	ids = writeNpy(t, dir, "ids.npy", []int64{1, 8}, []int64{101, 7592, 1010, 2088, 999, 102, 0, 0})
	mask = writeNpy(t, dir, "mask.npy", []int64{1, 8}, []int64{1, 1, 1, 1, 1, 1, 0, 0})
	return ids, mask
}

func TestRunDistilBERT(t *testing.T) {
	needORT(t)
	model := sharedModel(t, "distilbert-optimum")
	dir := t.TempDir()
	ids, mask := distilbertInputs(t, dir)
	outDir := filepath.Join(dir, "out")
	out, errOut, code := cli(t, "run", model, "--input", "input_ids="+ids, "--input", "attention_mask="+mask, "--output-dir", outDir, "--threads", "1")
	if code != 0 || errOut != "" {
		t.Fatalf("got status %d, stderr %q", code, errOut)
	}
	logitsPath := filepath.Join(outDir, "logits.npy")
	if want := "logits  float32  (1, 2)  " + logitsPath + "\n"; out != want {
		t.Errorf("got stdout %q, want %q", out, want)
	}
	if got := listDir(t, outDir); !reflect.DeepEqual(got, []string{"logits.npy"}) {
		t.Errorf("got files %q in the output dir, want only logits.npy", got)
	}
	a, err := npy.ReadFile(logitsPath)
	if err != nil {
		t.Fatal(err)
	}
	if a.DType != dtype.Float32 || !reflect.DeepEqual(a.Shape, []int64{1, 2}) {
		t.Fatalf("got logits %v, want float32 (1, 2)", a)
	}
	logits, _ := npy.Values[float32](a)
	for _, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Errorf("got logits %v, want finite values", logits)
		}
	}

	// NumPy must read the file as the same array.
	py := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import numpy").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Log("no python3 with numpy here; not checking that numpy reads the output")
		return
	}
	got, err := exec.Command(py, "-c", "import sys, numpy as np; a = np.load(sys.argv[1]); print(a.dtype, a.shape, repr(a.ravel().tolist()))", logitsPath).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy cannot read %s: %v\n%s", logitsPath, err, got)
	}
	if !strings.HasPrefix(string(got), "float32 (1, 2) [") {
		t.Errorf("numpy read %q, want float32 (1, 2)", got)
	}
}

// TestRunTinyLlama runs the fp16 model with external data, and checks that
// output names with dots become safe file names.
func TestRunTinyLlama(t *testing.T) {
	needORT(t)
	model := sharedModel(t, "tiny-llama-genai-fp16")
	dir := t.TempDir()
	args := []string{"run", model, "--threads", "1", "--output-dir", filepath.Join(dir, "out"),
		"--input", "input_ids=" + writeNpy(t, dir, "ids.npy", []int64{1, 3}, []int64{1, 450, 4996}),
		"--input", "attention_mask=" + writeNpy(t, dir, "mask.npy", []int64{1, 3}, []int64{1, 1, 1}),
		"--input", "position_ids=" + writeNpy(t, dir, "pos.npy", []int64{1, 3}, []int64{0, 1, 2}),
	}
	past, err := npy.NewFloat16([]int64{1, 1, 0, 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"past_key_values.0.key", "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"} {
		p := filepath.Join(dir, name+".npy")
		if err := npy.WriteFile(p, past); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--input", name+"="+p)
	}
	_, errOut, code := cli(t, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("got status %d, stderr %q", code, errOut)
	}
	want := map[string][]int64{
		"logits.npy":          {1, 3, 32000},
		"present_0_key.npy":   {1, 1, 3, 16},
		"present_0_value.npy": {1, 1, 3, 16},
		"present_1_key.npy":   {1, 1, 3, 16},
		"present_1_value.npy": {1, 1, 3, 16},
	}
	files := listDir(t, filepath.Join(dir, "out"))
	if len(files) != len(want) {
		t.Errorf("got files %q, want %d", files, len(want))
	}
	for name, shape := range want {
		a, err := npy.ReadFile(filepath.Join(dir, "out", name))
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if a.DType != dtype.Float16 || !reflect.DeepEqual(a.Shape, shape) {
			t.Errorf("%s: got %v, want float16 %v", name, a, npy.FormatShape(shape))
		}
	}
}

// TestRunErrors checks that each bad command line fails with one line that
// names the thing at fault, and that no output file is left behind.
func TestRunErrors(t *testing.T) {
	needORT(t)
	distilbert := sharedModel(t, "distilbert-optimum")
	gpt2 := sharedModel(t, "gpt2-past-torch16")
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	dir := t.TempDir()
	ids, mask := distilbertInputs(t, dir)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	real, err := os.ReadFile(distilbert)
	if err != nil {
		t.Fatal(err)
	}
	truncated := write("truncated.onnx", real[:100])
	garbage := write("garbage.onnx", []byte("\x00\x01garbage that is not protobuf\xff\xff\xff"))
	llamaBytes, err := os.ReadFile(llama)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "alone"), 0o755); err != nil {
		t.Fatal(err)
	}
	alone := write(filepath.Join("alone", "model.onnx"), llamaBytes)
	idsF32 := writeNpy(t, dir, "ids_f32.npy", []int64{1, 8}, make([]float32, 8))
	ids1D := writeNpy(t, dir, "ids_1d.npy", []int64{8}, make([]int64, 8))
	mask7 := writeNpy(t, dir, "mask7.npy", []int64{1, 7}, make([]int64, 7))
	ids12 := writeNpy(t, dir, "ids12.npy", []int64{1, 2}, []int64{1, 2})
	badNpy := write("bad.npy", []byte("not numpy"))
	missingNpy := filepath.Join(dir, "missing.npy")
	missingModel := filepath.Join(dir, "missing.onnx")
	good := []string{"--input", "input_ids=" + ids, "--input", "attention_mask=" + mask}

	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"missing model", append([]string{missingModel}, good...), 1, []string{missingModel, "no such file"}},
		{"truncated model", append([]string{truncated}, good...), 1, []string{truncated, "not an ONNX model"}},
		{"garbage model", append([]string{garbage}, good...), 1, []string{garbage, "not an ONNX model"}},
		{"missing external data", []string{alone, "--input", "input_ids=" + ids}, 1, []string{"model.onnx.data", "missing"}},
		{"unknown input", append([]string{distilbert, "--input", "token_type_ids=" + ids}, good...), 1,
			[]string{`unknown input "token_type_ids"`, ids, "input_ids int64 [batch, sequence], attention_mask int64 [batch, sequence]"}},
		{"wrong dtype", []string{distilbert, "--input", "input_ids=" + idsF32, "--input", "attention_mask=" + mask}, 1,
			[]string{`input "input_ids"`, idsF32, "float32 (1, 8)", "want int64 [batch, sequence]", "element type"}},
		{"wrong rank", []string{distilbert, "--input", "input_ids=" + ids1D, "--input", "attention_mask=" + mask}, 1,
			[]string{`input "input_ids"`, ids1D, "int64 (8,)", "rank 1, want 2"}},
		{"named dimension disagrees", []string{distilbert, "--input", "input_ids=" + ids, "--input", "attention_mask=" + mask7}, 1,
			[]string{`input "attention_mask"`, mask7, "dimension 1 (sequence) is 7", `input "input_ids" has sequence = 8`}},
		{"fixed dimension", []string{gpt2, "--input", "input_ids=" + ids12}, 1,
			[]string{`input "input_ids"`, "int64 (1, 2)", "want int64 [batch_size, 1]", "dimension 1 is 2, want 1"}},
		{"missing input", []string{distilbert, "--input", "input_ids=" + ids}, 1, []string{"missing --input for attention_mask int64 [batch, sequence]"}},
		{"missing .npy", []string{distilbert, "--input", "input_ids=" + missingNpy, "--input", "attention_mask=" + mask}, 1, []string{missingNpy, "no such file"}},
		{"bad .npy", []string{distilbert, "--input", "input_ids=" + badNpy, "--input", "attention_mask=" + mask}, 1, []string{badNpy, "bad magic"}},
		{"bad --input", []string{distilbert, "--input", "input_ids"}, 2, []string{`--input "input_ids": want NAME=FILE.npy`}},
		{"repeated --input", append([]string{distilbert, "--input", "input_ids=" + ids}, good...), 2, []string{`--input "input_ids" is given twice`}},
		{"no model", good, 2, []string{"want one MODEL, got 0"}},
		{"bad threads", append([]string{distilbert, "--threads", "-1"}, good...), 2, []string{"--threads must be 0 or more"}},
		{"bad device", append([]string{distilbert, "--device", "tpu"}, good...), 1, []string{`unknown device "tpu"`}},
	} {
		outDir := filepath.Join(dir, "out")
		args := append([]string{"run", "--threads", "1", "--output-dir", outDir}, test.args...)
		out, errOut, code := cli(t, args...)
		wantError(t, test.reason, out, errOut, code, test.code, test.parts...)
		if files := listDir(t, outDir); len(files) != 0 {
			t.Errorf("%s: left %q in the output dir", test.reason, files)
		}
	}

	out, errOut, code := cli(t, append([]string{"run", distilbert}, good...)...)
	wantError(t, "no --output-dir", out, errOut, code, 2, "--output-dir is required")
}

// TestRunCUDA asks for CUDA. With a CPU build of ONNX Runtime that must be
// a one-line error that says so; with CUDA it must work.
func TestRunCUDA(t *testing.T) {
	needORT(t)
	model := sharedModel(t, "distilbert-optimum")
	dir := t.TempDir()
	ids, mask := distilbertInputs(t, dir)
	out, errOut, code := cli(t, "run", model, "--device", "cuda", "--input", "input_ids="+ids, "--input", "attention_mask="+mask, "--output-dir", filepath.Join(dir, "out"))
	if code == 0 {
		t.Logf("CUDA is available: %s", out)
		return
	}
	wantError(t, "cuda without CUDA", out, errOut, code, 1, "CUDA")
	if files := listDir(t, filepath.Join(dir, "out")); len(files) != 0 {
		t.Errorf("left %q in the output dir", files)
	}
}

func TestOutputFileNames(t *testing.T) {
	for _, test := range []struct {
		names, want []string
	}{
		{[]string{"logits"}, []string{"logits.npy"}},
		{[]string{"present.0.key", "/model/layers.0/out", "a b", ""}, []string{"present_0_key.npy", "_model_layers_0_out.npy", "a_b.npy", "output.npy"}},
		{[]string{"a.b", "a_b", "a/b", "A_B"}, []string{"a_b.npy", "a_b_2.npy", "a_b_3.npy", "A_B_4.npy"}},
		{[]string{"..", "x:y", "ü"}, []string{"__.npy", "x_y.npy", "_.npy"}},
	} {
		if got := outputFileNames(test.names); !reflect.DeepEqual(got, test.want) {
			t.Errorf("outputFileNames(%q): got %q, want %q", test.names, got, test.want)
		}
	}
}

// TestWriteArraysAllOrNothing makes the second of two outputs fail to
// write and wants neither file, nor a temporary one, left behind.
func TestWriteArraysAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	good, _ := npy.New([]int64{2}, []float32{1, 2})
	bad := &npy.Array{DType: dtype.Float32, Shape: []int64{2}, Data: make([]byte, 3)}
	if _, err := writeArrays(dir, []namedArray{{name: "a", array: good}, {name: "b", array: bad}}); err == nil {
		t.Fatal("writeArrays succeeded with an invalid array")
	}
	if files := listDir(t, dir); len(files) != 0 {
		t.Errorf("got %q in the output dir, want nothing", files)
	}
	paths, err := writeArrays(dir, []namedArray{{name: "a.x", array: good}, {name: "a/x", array: good}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "a_x.npy"), filepath.Join(dir, "a_x_2.npy")}; !reflect.DeepEqual(paths, want) {
		t.Errorf("got paths %q, want %q", paths, want)
	}
}

// writeFeeds writes each tensor of feeds to dir as .npy and returns the
// --input flags that feed them.
func writeFeeds(t *testing.T, dir string, feeds map[string]*ortrt.Tensor) []string {
	t.Helper()
	var args []string
	for _, name := range sortedNames(feeds) {
		a, _, err := arrayFromTensor(feeds[name])
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+".npy")
		if err := npy.WriteFile(p, a); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--input", name+"="+p)
	}
	return args
}

// readOutputs reads the .npy files that run wrote for the outputs named in
// like, as float32 values by output name.
func readOutputs(t *testing.T, dir string, like map[string][]float32) map[string][]float32 {
	t.Helper()
	names := sortedNames(like)
	files := outputFileNames(names)
	got := map[string][]float32{}
	for i, name := range names {
		x, err := readTensor(filepath.Join(dir, files[i]))
		if err != nil {
			t.Fatal(err)
		}
		got[name] = x.ToFloat32()
	}
	if n := len(listDir(t, dir)); n != len(names) {
		t.Errorf("got %d files in %s, want %d", n, dir, len(names))
	}
	return got
}

// TestRunAdapter runs base models with --adapter, from both formats: the
// outputs are the trained model's. On a model whose factors are graph
// inputs the adapter is fed to them.
func TestRunAdapter(t *testing.T) {
	needORT(t)
	for _, c := range []loraCase{loraCases[0], loraCases[3]} {
		t.Run(c.name, func(t *testing.T) {
			base, trained := trainedModel(t, c)
			dir := t.TempDir()
			feeds := modelFeeds(t, c.model)
			inputs := writeFeeds(t, dir, feeds)
			want := runModel(t, trained, feeds)
			hf := filepath.Join(dir, "adapter")
			fb := filepath.Join(dir, "adapter.onnx_adapter")
			runOK(t, "export-adapter", trained, "--out", hf)
			runOK(t, "export-adapter", trained, "--out", fb)

			for i, ad := range []string{hf, fb} {
				outDir := filepath.Join(dir, fmt.Sprint("out", i))
				runOK(t, append([]string{"run", base, "--adapter", ad, "--output-dir", outDir, "--threads", "1"}, inputs...)...)
				wantSame(t, "run --adapter "+filepath.Base(ad), readOutputs(t, outDir, want), want, c.tol)
			}

			asInputs := filepath.Join(dir, "inputs.onnx")
			runOK(t, "inject", base, "-o", asInputs, "--target", ".*", "--as-inputs")
			outDir := filepath.Join(dir, "out-inputs")
			args := append([]string{"run", asInputs, "--adapter", hf, "--output-dir", outDir, "--threads", "1"}, inputs...)
			if c.name == "distilbert" {
				// --bias lora: the adapter carries biases, which LoRA inputs cannot take.
				stdout, errOut, code := cli(t, args...)
				wantError(t, "adapter with biases on LoRA inputs", stdout, errOut, code, 1, "base tensors", "run its base model")
				return
			}
			runOK(t, args...)
			wantSame(t, "run --adapter on LoRA inputs", readOutputs(t, outDir, want), want, c.tol)
		})
	}
}

// TestRunAdapterLargeModel takes the path for models over 2 GiB, which go
// to ONNX Runtime through a temporary file, and checks that the file is
// removed afterwards.
func TestRunAdapterLargeModel(t *testing.T) {
	needORT(t)
	c := loraCases[3]
	base, trained := trainedModel(t, c)
	dir := t.TempDir()
	feeds := modelFeeds(t, c.model)
	inputs := writeFeeds(t, dir, feeds)
	hf := filepath.Join(dir, "adapter")
	runOK(t, "export-adapter", trained, "--out", hf)

	defer func(v int64) { spillAbove = v }(spillAbove)
	spillAbove = 1 // as if the adapted model were over 2 GiB
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	outDir := filepath.Join(dir, "out")
	runOK(t, append([]string{"run", base, "--adapter", hf, "--output-dir", outDir, "--threads", "1"}, inputs...)...)
	want := runModel(t, trained, feeds)
	wantSame(t, "run --adapter through a file", readOutputs(t, outDir, want), want, c.tol)
	if left := listDir(t, tmp); len(left) != 0 {
		t.Errorf("left %q in the temporary folder", left)
	}
}

// TestRunAdapterErrors checks the errors that --adapter adds.
func TestRunAdapterErrors(t *testing.T) {
	needORT(t)
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	distilbert := sharedModel(t, "distilbert-optimum")
	dir := t.TempDir()
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", llama, "-o", adapted, "--target", ".*q_proj")
	ad := filepath.Join(dir, "adapter")
	runOK(t, "export-adapter", adapted, "--out", ad)
	asInputs := filepath.Join(dir, "inputs.onnx")
	runOK(t, "inject", llama, "-o", asInputs, "--target", ".*q_proj", "--as-inputs")
	a := writeNpy(t, dir, "a.npy", []int64{16, 8}, make([]float32, 16*8))
	ids, mask := distilbertInputs(t, dir)
	llamaInputs := writeFeeds(t, dir, modelFeeds(t, "tiny-llama-genai-fp16"))
	outDir := filepath.Join(dir, "out")

	for _, test := range []struct {
		reason string
		args   []string
		parts  []string
	}{
		{"adapter on an adapted model", append([]string{adapted, "--adapter", ad}, llamaInputs...), []string{adapted, "already carries LoRA branches"}},
		{"adapter for another model", []string{distilbert, "--adapter", ad, "--input", "input_ids=" + ids, "--input", "attention_mask=" + mask}, []string{ad, distilbert, "model.layers.0.attn.q_proj"}},
		{"input fed twice", append([]string{asInputs, "--adapter", ad, "--input", "model.layers.0.attn.q_proj.lora_A.weight=" + a}, llamaInputs...), []string{`input "model.layers.0.attn.q_proj.lora_A.weight"`, "--input", "--adapter"}},
		{"missing adapter", append([]string{llama, "--adapter", filepath.Join(dir, "nothing")}, llamaInputs...), []string{"nothing", "no such file"}},
	} {
		stdout, errOut, code := cli(t, append([]string{"run", "--output-dir", outDir}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, 1, test.parts...)
		if files := listDir(t, outDir); len(files) != 0 {
			t.Errorf("%s: left %q in the output dir", test.reason, files)
		}
	}
}

// TestLongOutputNames writes outputs of 300-character names that share
// their first 200 (issue 16, E10): two files, of names a file system
// takes, told apart.
func TestLongOutputNames(t *testing.T) {
	dir := t.TempDir()
	x, _ := npy.New([]int64{1}, []float32{1})
	long := strings.Repeat("n", 200)
	paths, err := writeArrays(dir, []namedArray{{name: long + strings.Repeat("a", 100), array: x}, {name: long + strings.Repeat("b", 100), array: x}})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || paths[0] == paths[1] || len(filepath.Base(paths[0])) > maxOutputBase+len(".npy") {
		t.Errorf("got %q", paths)
	}
}
