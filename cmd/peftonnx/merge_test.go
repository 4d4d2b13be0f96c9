package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
)

// loadModel loads a model and closes it at the end of the test.
func loadModel(t *testing.T, path string) *graph.Model {
	t.Helper()
	m, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// sameInitializers reports the first initializer that a and b do not
// share with the same bytes, or "".
func sameInitializers(t *testing.T, a, b *graph.Model) string {
	t.Helper()
	var names []string
	for _, x := range a.Graph().Initializer {
		names = append(names, x.Name)
	}
	var other []string
	for _, x := range b.Graph().Initializer {
		other = append(other, x.Name)
	}
	slices.Sort(names)
	slices.Sort(other)
	if !slices.Equal(names, other) {
		return "the initializer names"
	}
	for _, name := range names {
		ab, err := a.TensorBytes(a.Initializer(name))
		if err != nil {
			t.Fatal(err)
		}
		bb, err := b.TensorBytes(b.Initializer(name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ab, bb) {
			return name
		}
	}
	return ""
}

// TestMergeRealModels merges trained models: the merged model has the
// base's nodes and initializers and computes what the trained model does,
// and merging the exported adapter into the base gives the same weights.
func TestMergeRealModels(t *testing.T) {
	needORT(t)
	for _, c := range loraCases {
		t.Run(c.name, func(t *testing.T) {
			base, trained := trainedModel(t, c)
			dir := t.TempDir()
			merged := filepath.Join(dir, "merged.onnx")
			stdout := runOK(t, "merge", trained, "-o", merged)
			golden(t, filepath.Join("merge", c.name+".txt"), tempPaths(stdout, dir))

			bm, mm := loadModel(t, base), loadModel(t, merged)
			if got, want := len(mm.Graph().Node), len(bm.Graph().Node); got != want {
				t.Errorf("merged model has %d nodes, want the base's %d", got, want)
			}
			if got, want := len(mm.Graph().Initializer), len(bm.Graph().Initializer); got != want {
				t.Errorf("merged model has %d initializers, want the base's %d", got, want)
			}
			if got, want := len(mm.Graph().Input), len(bm.Graph().Input); got != want {
				t.Errorf("merged model has %d inputs, want the base's %d", got, want)
			}
			_, baseExternal := os.Stat(base + ".data")
			_, outExternal := os.Stat(merged + ".data")
			if (baseExternal == nil) != (outExternal == nil) {
				t.Errorf("base has external data: %v; merged model has: %v", baseExternal == nil, outExternal == nil)
			}
			feeds := modelFeeds(t, c.model)
			wantSame(t, "merged vs trained", runModel(t, merged, feeds), runModel(t, trained, feeds), c.mergeTol)

			ad := filepath.Join(dir, "adapter")
			runOK(t, "export-adapter", trained, "--out", ad)
			fromAdapter := filepath.Join(dir, "merged-from-adapter.onnx")
			runOK(t, "merge", base, "--adapter", ad, "-o", fromAdapter)
			if name := sameInitializers(t, mm, loadModel(t, fromAdapter)); name != "" {
				t.Errorf("merge BASE --adapter and merge MODEL differ in %s", name)
			}
		})
	}
}

// TestMergeAsInputs bakes an adapter into a model whose factors are graph
// inputs, which then counts as its base.
func TestMergeAsInputs(t *testing.T) {
	needORT(t)
	c := loraCases[1]
	base, trained := trainedModel(t, c)
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter")
	runOK(t, "export-adapter", trained, "--out", ad)
	inputs := filepath.Join(dir, "inputs.onnx")
	runOK(t, "inject", base, "-o", inputs, "--target", ".*", "--as-inputs")

	out := filepath.Join(dir, "out.onnx")
	stdout, errOut, code := cli(t, "merge", inputs, "-o", out)
	wantError(t, "as-inputs model without --adapter", stdout, errOut, code, 1, "graph inputs", "--adapter")
	fromInputs := filepath.Join(dir, "from-inputs.onnx")
	runOK(t, "merge", inputs, "--adapter", ad, "-o", fromInputs)
	fromBase := filepath.Join(dir, "from-base.onnx")
	runOK(t, "merge", base, "--adapter", ad, "-o", fromBase)
	if name := sameInitializers(t, loadModel(t, fromInputs), loadModel(t, fromBase)); name != "" {
		t.Errorf("merging into the as-inputs model and into the base differ in %s", name)
	}
	if got, want := len(loadModel(t, fromInputs).Graph().Node), len(loadModel(t, base).Graph().Node); got != want {
		t.Errorf("got %d nodes, want the base's %d", got, want)
	}
}

// TestMergeErrors checks the errors of merge, and that a failed merge
// writes nothing.
func TestMergeErrors(t *testing.T) {
	llama := sharedModel(t, "tiny-llama-genai-fp16")
	distilbert := sharedModel(t, "distilbert-optimum")
	dir := t.TempDir()
	adapted := filepath.Join(dir, "adapted.onnx")
	runOK(t, "inject", llama, "-o", adapted, "--target", ".*q_proj")
	ad := filepath.Join(dir, "adapter")
	runOK(t, "export-adapter", adapted, "--out", ad)
	out := filepath.Join(dir, "out", "merged.onnx")

	for _, test := range []struct {
		reason string
		args   []string
		code   int
		parts  []string
	}{
		{"base model without --adapter", []string{llama, "-o", out}, 1, []string{llama, "carries no LoRA branch", "--adapter"}},
		{"adapted model with --adapter", []string{adapted, "--adapter", ad, "-o", out}, 1, []string{adapted, "already carries LoRA branches"}},
		{"adapter for another model", []string{distilbert, "--adapter", ad, "-o", out}, 1, []string{ad, "model.layers.0.attn.q_proj"}},
		{"no -o", []string{adapted}, 2, []string{"-o OUT is required"}},
		{"no model", []string{"-o", out}, 2, []string{"want one MODEL, got 0"}},
	} {
		stdout, errOut, code := cli(t, append([]string{"merge"}, test.args...)...)
		wantError(t, test.reason, stdout, errOut, code, test.code, test.parts...)
		if _, err := os.Stat(filepath.Dir(out)); err == nil {
			t.Errorf("%s: left %q behind", test.reason, listDir(t, filepath.Dir(out)))
		}
	}
}
