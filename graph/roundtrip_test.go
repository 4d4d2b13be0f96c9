package graph_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// sharedModels is where the real exported models live, beside the project.
const sharedModels = "../../shared/models"

func sharedModel(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(sharedModels, name, "model.onnx")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("real model %s is missing: the project expects ../shared beside it (%v)", p, err)
	}
	return p
}

var realModels = []string{"distilbert-optimum", "gpt2-past-torch16", "lora-inputs-ort", "tiny-llama-genai-fp16"}

// TestRoundTripRealModels loads each real model, saves it inline and with
// external data, loads both back, and checks that graph and weights are
// unchanged.
func TestRoundTripRealModels(t *testing.T) {
	for _, name := range realModels {
		t.Run(name, func(t *testing.T) {
			m, err := graph.Load(sharedModel(t, name))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			for _, ext := range []bool{false, true} {
				out := filepath.Join(t.TempDir(), "model.onnx")
				if err := m.Save(out, graph.SaveOptions{ExternalData: ext}); err != nil {
					t.Fatalf("save (external=%v): %v", ext, err)
				}
				back, err := graph.Load(out)
				if err != nil {
					t.Fatalf("load after save (external=%v): %v", ext, err)
				}
				compareModels(t, m, back)
				back.Close()
			}
		})
	}
}

// compareModels checks that two models have the same structure and the same
// tensor bytes, whatever the storage of each tensor.
func compareModels(t *testing.T, want, got *graph.Model) {
	t.Helper()
	strip := func(m *graph.Model) *onnxpb.ModelProto {
		p := proto.Clone(m.Proto).(*onnxpb.ModelProto)
		for _, init := range p.Graph.Initializer {
			init.RawData, init.ExternalData, init.DataLocation = nil, nil, 0
			init.FloatData, init.Int32Data, init.Int64Data, init.DoubleData, init.Uint64Data = nil, nil, nil, nil, nil
		}
		return p
	}
	if !proto.Equal(strip(want), strip(got)) {
		t.Fatalf("graph structure changed in the round trip")
	}
	for i, wt := range want.Graph().Initializer {
		gt := got.Graph().Initializer[i]
		wb, err := want.TensorBytes(wt)
		if err != nil {
			t.Fatal(err)
		}
		gb, err := got.TensorBytes(gt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(wb, gb) {
			t.Fatalf("initializer %q: data changed in the round trip", wt.Name)
		}
	}
}

// TestSaveIsDeterministic saves a model twice and expects the same bytes.
func TestSaveIsDeterministic(t *testing.T) {
	m, err := graph.Load(sharedModel(t, "tiny-llama-genai-fp16"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := t.TempDir()
	var files [2][]byte
	var data [2][]byte
	for i := range files {
		p := filepath.Join(dir, "m"+string(rune('a'+i))+".onnx")
		if err := m.Save(p, graph.SaveOptions{ExternalData: true, DataFile: "weights.bin"}); err != nil {
			t.Fatal(err)
		}
		files[i], _ = os.ReadFile(p)
		data[i], _ = os.ReadFile(filepath.Join(dir, "weights.bin"))
	}
	if !bytes.Equal(files[0], files[1]) || !bytes.Equal(data[0], data[1]) {
		t.Fatal("two saves of one model differ")
	}
	for _, f := range []string{"ma.onnx", "weights.bin"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", f, fi.Mode().Perm())
		}
	}
}

// TestExternalDataIsLazy checks that Load does not read the data file: the
// data is mapped, and the tensors come from it on first access.
func TestExternalDataStaysOnDisk(t *testing.T) {
	m, err := graph.Load(sharedModel(t, "tiny-llama-genai-fp16"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	external := 0
	for _, init := range m.Graph().Initializer {
		if init.DataLocation == onnxpb.TensorProto_EXTERNAL {
			external++
			if len(init.RawData) != 0 {
				t.Fatalf("%s: external tensor was read into memory on Load", init.Name)
			}
		}
	}
	if external != 23 {
		t.Fatalf("external tensors: got %d want 23", external)
	}
	emb := m.Initializer("model.embed_tokens.weight")
	if emb == nil {
		t.Fatal("model.embed_tokens.weight not found")
	}
	v, err := m.Float32s(emb)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := int64(len(v)), graph.NumElements(emb.Dims); got != want {
		t.Fatalf("embedding values: got %d want %d", got, want)
	}
}

// TestSaveOverSource saves a model with external data over its own files,
// which are mapped while they are rewritten.
func TestSaveOverSource(t *testing.T) {
	src, err := graph.Load(sharedModel(t, "tiny-llama-genai-fp16"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	p := filepath.Join(dir, "model.onnx")
	if err := src.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 64}); err != nil {
		t.Fatal(err)
	}
	m, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// A different threshold moves tensors to other offsets in the same file.
	if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 4096}); err != nil {
		t.Fatal(err)
	}
	compareModels(t, src, m)
	back, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	compareModels(t, src, back)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files left in the folder: got %d want 2 (model and data)", len(entries))
	}
}
