package rewrite

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// sharedModels is the folder of real models beside the project's root.
var sharedModels = filepath.Join("..", "..", "shared", "models")

// realModel loads a model from sharedModels, skipping the test where the
// folder is absent.
func realModel(t testing.TB, rel string) *graph.Model {
	t.Helper()
	path := filepath.Join(sharedModels, rel)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real model %s not available: %v", rel, err)
	}
	m, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// testModel is a model to adapt, with the shapes to run it at.
type testModel struct {
	name  string
	load  func(t testing.TB) *graph.Model
	count int // linear layers
	past  int // past length fed to past_* inputs
	tol   float64
}

var realModels = []testModel{
	{"distilbert", func(t testing.TB) *graph.Model { return realModel(t, "distilbert-optimum/model.onnx") }, 14, 0, 1e-5},
	{"gpt2-past", func(t testing.TB) *graph.Model { return realModel(t, "gpt2-past-torch16/model.onnx") }, 48, 3, 1e-5},
	{"tiny-llama-fp16", func(t testing.TB) *graph.Model { return realModel(t, "tiny-llama-genai-fp16/model.onnx") }, 15, 0, 2e-2},
}

// builtModel wraps a models/ builder as a testModel loader.
func builtModel(build func() (*graph.Model, error)) func(t testing.TB) *graph.Model {
	return func(t testing.TB) *graph.Model {
		t.Helper()
		m, err := build()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func llamaFP16() (*graph.Model, error) {
	c := models.LlamaTiny()
	c.DType = dtype.Float16
	return models.Llama(c)
}

func gpt2Variant(gemm, anon bool) func() (*graph.Model, error) {
	return func() (*graph.Model, error) {
		c := models.GPT2Tiny()
		c.Gemm, c.AnonymousNodes = gemm, anon
		return models.GPT2(c)
	}
}

var builtModels = []testModel{
	{"llama", builtModel(func() (*graph.Model, error) { return models.Llama(models.LlamaTiny()) }), 0, 2, 1e-5},
	{"llama-fp16", builtModel(llamaFP16), 0, 2, 2e-2},
	{"gpt2", builtModel(gpt2Variant(false, false)), 0, 2, 1e-5},
	{"gpt2-gemm", builtModel(gpt2Variant(true, false)), 0, 2, 1e-5},
	{"gpt2-anon", builtModel(gpt2Variant(false, true)), 0, 2, 1e-5},
	{"bert", builtModel(func() (*graph.Model, error) { return models.BERT(models.BERTTiny()) }), 0, 0, 1e-5},
	{"convlm", builtModel(func() (*graph.Model, error) { return models.ConvLM(models.ConvLMTiny()) }), 1, 0, 1e-5},
}

// needORT skips the test where the ONNX Runtime library cannot be found.
func needORT(t testing.TB) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skipf("ONNX Runtime not available: %v", err)
		}
		t.Fatal(err)
	}
}

// session opens m on ONNX Runtime with one thread.
func session(t testing.TB, m *graph.Model) *rt.Session {
	t.Helper()
	needORT(t)
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1), rt.WithInterOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// feedsFor makes inputs for every required input of s from the usual
// transformer input names: ids below 30, an all-ones mask, positions after
// the past, past keys and values of length past, drawn from seed.
func feedsFor(t testing.TB, s *rt.Session, batch, seq, past int, seed uint64) map[string]*rt.Tensor {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	feeds := map[string]*rt.Tensor{}
	for _, in := range s.Inputs() {
		if in.Optional {
			continue
		}
		var tensor *rt.Tensor
		var err error
		switch {
		case in.Name == "input_ids":
			ids := make([]int64, batch*seq)
			for i := range ids {
				ids[i] = int64(rng.IntN(30))
			}
			shape := []int64{int64(batch), int64(seq)}
			if len(in.Shape) == 2 && in.Shape[1] == 1 {
				shape[1] = 1
				ids = ids[:batch]
			}
			tensor, err = rt.NewInt64(shape, ids)
		case in.Name == "attention_mask":
			mask := make([]int64, batch*(past+seq))
			for i := range mask {
				mask[i] = 1
			}
			tensor, err = rt.NewInt64([]int64{int64(batch), int64(past + seq)}, mask)
		case in.Name == "position_ids":
			pos := make([]int64, batch*seq)
			for i := range pos {
				pos[i] = int64(past + i%seq)
			}
			tensor, err = rt.NewInt64([]int64{int64(batch), int64(seq)}, pos)
		case in.Name == "token_type_ids":
			tensor, err = rt.NewInt64([]int64{int64(batch), int64(seq)}, make([]int64, batch*seq))
		case in.DType == dtype.Float32 || in.DType == dtype.Float16:
			shape := slices.Clone(in.Shape)
			for i, d := range shape {
				if d >= 0 {
					continue
				}
				p := strings.ToLower(in.DimParams[i])
				switch {
				case strings.Contains(p, "batch"):
					shape[i] = int64(batch)
				case strings.Contains(p, "past") || strings.Contains(p, "seq"):
					shape[i] = int64(past)
				case i == 0 || (i == 1 && len(shape) == 5):
					shape[i] = int64(batch)
				default:
					shape[i] = int64(past)
				}
			}
			vals := make([]float32, graph.NumElements(shape))
			for i := range vals {
				vals[i] = float32(rng.NormFloat64())
			}
			if in.DType == dtype.Float16 {
				tensor, err = rt.NewFloat16FromFloat32(shape, vals)
			} else {
				tensor, err = rt.NewFloat32(shape, vals)
			}
		default:
			t.Fatalf("no rule to feed input %s", in)
		}
		if err != nil {
			t.Fatal(err)
		}
		feeds[in.Name] = tensor
	}
	return feeds
}

// run runs s on feeds and returns every output.
func run(t testing.TB, s *rt.Session, feeds map[string]*rt.Tensor) map[string]*rt.Tensor {
	t.Helper()
	out, err := s.Run(feeds, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runModel runs m once on feeds made by feedsFor.
func runModel(t testing.TB, m *graph.Model, batch, seq, past int) map[string]*rt.Tensor {
	t.Helper()
	s := session(t, m)
	return run(t, s, feedsFor(t, s, batch, seq, past, 1))
}

// maxRelDiff returns the largest |got-want| / max(1, |want|) over all
// outputs of want, and the output where it is; a NaN in either counts as
// +Inf.
func maxRelDiff(t testing.TB, got, want map[string]*rt.Tensor) (float64, string) {
	t.Helper()
	worst, where := 0.0, ""
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("output %q missing", name)
		}
		if !slices.Equal(g.Shape(), w.Shape()) {
			t.Fatalf("output %q: got shape %v want %v", name, g.Shape(), w.Shape())
		}
		gv, wv := g.ToFloat64(), w.ToFloat64()
		for i := range wv {
			d := math.Abs(gv[i]-wv[i]) / math.Max(1, math.Abs(wv[i]))
			if math.IsNaN(d) {
				d = math.Inf(1)
			}
			if d > worst {
				worst, where = d, name
			}
		}
	}
	return worst, where
}

// randomizeB gives every LoRA B of m random values, so that the branches
// change the outputs.
func randomizeB(t testing.TB, m *graph.Model, sites []Site, seed uint64, std float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	for _, s := range sites {
		b := m.Initializer(s.B)
		vals := make([]float32, graph.NumElements(b.Dims))
		for i := range vals {
			vals[i] = float32(rng.NormFloat64() * std)
		}
		if err := graph.SetFloat32s(b, vals); err != nil {
			t.Fatal(err)
		}
	}
}

// names returns the node names and initializer names of m, sorted.
func names(m *graph.Model) (nodes, inits []string) {
	for _, n := range m.Graph().Node {
		nodes = append(nodes, n.Name)
	}
	for _, t := range m.Graph().Initializer {
		inits = append(inits, t.Name)
	}
	slices.Sort(nodes)
	slices.Sort(inits)
	return nodes, inits
}

// config returns a LoRA config for targets with rank r.
func config(r int, alpha float64, targets ...string) adapter.LoRAConfig {
	c := adapter.DefaultLoRAConfig(targets...)
	c.R, c.Alpha = r, alpha
	return c
}
