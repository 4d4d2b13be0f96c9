package session_test

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

func requireORT(t *testing.T) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// fixture is a tiny LLaMA saved four ways, and the adapters for it.
type fixture struct {
	dir                  string
	base, adapted, input string // base, with trained LoRA, with LoRA factors as inputs
	prefixed             string
	lora, prefix         string // adapter directories
	ad                   *adapter.Adapter
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	build := func() *graph.Model {
		m, err := models.Llama(models.LlamaTiny())
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	save := func(m *graph.Model, name string, ext bool) string {
		p := filepath.Join(f.dir, name)
		if err := m.Save(p, graph.SaveOptions{ExternalData: ext, Threshold: 64}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.base = save(build(), "base.onnx", true)
	cfg := adapter.DefaultLoRAConfig(".*q_proj", ".*v_proj")
	cfg.R = 2
	m := build()
	if _, _, err := rewrite.InjectLoRA(m, cfg, rewrite.WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	// B starts at zero: give it values, so that the adapter changes what
	// the model computes.
	sites, err := rewrite.Sites(m)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range sites {
		b := make([]float32, s.R*int(s.Out))
		for j := range b {
			b[j] = float32((i+j)%7-3) * 0.05
		}
		if err := graph.SetFloat32s(m.Initializer(s.B), b); err != nil {
			t.Fatal(err)
		}
	}
	f.adapted = save(m, "adapted.onnx", false)
	if f.ad, err = rewrite.Extract(m); err != nil {
		t.Fatal(err)
	}
	f.lora = filepath.Join(f.dir, "lora")
	if err := adapter.SaveDir(f.lora, f.ad); err != nil {
		t.Fatal(err)
	}
	m = build()
	if _, _, err := rewrite.InjectLoRA(m, cfg, rewrite.AsInputs()); err != nil {
		t.Fatal(err)
	}
	f.input = save(m, "inputs.onnx", false)
	m = build()
	if _, _, err := rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 3}, rewrite.WithSeed(4)); err != nil {
		t.Fatal(err)
	}
	f.prefixed = save(m, "prefixed.onnx", false)
	pad, err := rewrite.Extract(m)
	if err != nil {
		t.Fatal(err)
	}
	f.prefix = filepath.Join(f.dir, "prefix")
	if err := adapter.SaveDir(f.prefix, pad); err != nil {
		t.Fatal(err)
	}
	return f
}

// logits runs s on one sequence with an empty past, with s.Feeds.
func logits(t *testing.T, s *session.Session) []float32 {
	t.Helper()
	ids := []int64{1, 5, 9, 3}
	in := map[string]*rt.Tensor{}
	for _, v := range s.Inputs() {
		var err error
		switch {
		case v.Name == "input_ids":
			in[v.Name], err = rt.NewInt64([]int64{1, 4}, ids)
		case v.Name == "attention_mask":
			in[v.Name], err = rt.NewInt64([]int64{1, 4}, []int64{1, 1, 1, 1})
		case v.Name == "position_ids":
			in[v.Name], err = rt.NewInt64([]int64{1, 4}, []int64{0, 1, 2, 3})
		case strings.HasPrefix(v.Name, "past_key_values."):
			in[v.Name], err = rt.Zeros(v.DType, []int64{1, v.Shape[1], 0, v.Shape[3]})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, f := range s.Feeds {
		in[name] = f
	}
	out, err := s.Run(in, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return out["logits"].ToFloat32()
}

// maxDiff returns the largest |a[i] − b[i]|: +Inf where the lengths
// differ or a value is NaN.
func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		e := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = math.Max(d, e)
	}
	return d
}

// TestMaxDiffSeesNaN: a NaN, on either side or both, is no match.
func TestMaxDiffSeesNaN(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range [][2][]float32{{{1, nan}, {1, 2}}, {{1, 2}, {1, nan}}, {{nan}, {nan}}} {
		if d := maxDiff(c[0], c[1]); !math.IsInf(d, 1) {
			t.Errorf("maxDiff(%v, %v) = %v, want +Inf", c[0], c[1], d)
		}
	}
	if d := maxDiff([]float32{1, 2}, []float32{1, 2.5}); d != 0.5 {
		t.Errorf("maxDiff = %v, want 0.5", d)
	}
}

func open(t *testing.T, path string, opts ...session.Option) *session.Session {
	t.Helper()
	s, err := session.Open(path, append([]session.Option{session.WithRuntime(rt.WithIntraOpThreads(1))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOpen: the base model with an adapter, applied or fed, computes what
// the adapted model computes; a prefix adapter what the prefixed model
// does, and the session says it carries a prefix.
func TestOpen(t *testing.T) {
	requireORT(t)
	f := newFixture(t)
	base, adapted, prefixed := logits(t, open(t, f.base)), logits(t, open(t, f.adapted)), logits(t, open(t, f.prefixed))
	if maxDiff(base, adapted) < 1e-3 {
		t.Fatal("the adapter does not change the logits: the test would prove nothing")
	}
	for _, c := range []struct {
		name   string
		model  string
		opts   []session.Option
		want   []float32
		feeds  bool
		prefix int
	}{
		{"base", f.base, nil, base, false, 0},
		{"adapter file applied", f.base, []session.Option{session.WithAdapterFile(f.lora)}, adapted, false, 0},
		{"adapter in memory applied", f.base, []session.Option{session.WithAdapter(f.ad)}, adapted, false, 0},
		{"adapter fed", f.input, []session.Option{session.WithAdapterFile(f.lora)}, adapted, true, 0},
		{"inputs, nothing fed", f.input, nil, base, false, 0},
		{"prefix adapter", f.base, []session.Option{session.WithAdapterFile(f.prefix)}, prefixed, false, 3},
		{"prefixed model", f.prefixed, nil, prefixed, false, 3},
		{"spilled", f.base, []session.Option{session.WithAdapter(f.ad), session.WithSpillAbove(1)}, adapted, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			s := open(t, c.model, c.opts...)
			if d := maxDiff(logits(t, s), c.want); d > 1e-5 {
				t.Errorf("logits differ by %g", d)
			}
			if got := s.Feeds != nil; got != c.feeds {
				t.Errorf("feeds %v, want %v", got, c.feeds)
			}
			got := 0
			if s.Prefix != nil {
				got = s.Prefix.Config.NumPrefixTokens
			}
			if got != c.prefix {
				t.Errorf("a prefix of %d tokens, want %d", got, c.prefix)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("%d entries left in the temporary folder", len(left))
			}
		})
	}
}

// TestOpenModel: a model in memory, whose weights are external data,
// opens without a copy of them and is not changed by an adapter.
func TestOpenModel(t *testing.T) {
	requireORT(t)
	f := newFixture(t)
	m, err := graph.Load(f.base)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	before, _, err := m.MarshalReferencing()
	if err != nil {
		t.Fatal(err)
	}
	want := logits(t, open(t, f.adapted))
	for _, spill := range []int64{0, 1} {
		opts := []session.Option{session.WithAdapter(f.ad), session.WithRuntime(rt.WithIntraOpThreads(1))}
		if spill > 0 {
			opts = append(opts, session.WithSpillAbove(spill))
		}
		s, err := session.OpenModel(m, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxDiff(logits(t, s), want); d > 1e-5 {
			t.Errorf("spill %d: logits differ from the adapted model's by %g", spill, d)
		}
		s.Close()
	}
	after, _, err := m.MarshalReferencing()
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("OpenModel changed the caller's model")
	}
}

// TestOpenErrors: what cannot be opened says what and where.
func TestOpenErrors(t *testing.T) {
	requireORT(t)
	f := newFixture(t)
	missing := filepath.Join(f.dir, "nothing")
	noWeights := filepath.Join(f.dir, "config-only")
	if err := os.MkdirAll(noWeights, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(f.lora, adapter.HFConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(noWeights, adapter.HFConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		model    string
		opts     []session.Option
		want     []string
		notExist bool
	}{
		{"missing model", missing, nil, []string{missing}, false},
		{"missing adapter", f.base, []session.Option{session.WithAdapterFile(missing)}, []string{missing}, true},
		{"adapter without weights", f.base, []session.Option{session.WithAdapterFile(noWeights)}, []string{noWeights, adapter.HFWeightsFile}, false},
		{"adapter on an adapted model", f.adapted, []session.Option{session.WithAdapterFile(f.lora)}, []string{f.adapted, "already carries LoRA branches"}, false},
		{"prefix on a prefixed model", f.prefixed, []session.Option{session.WithAdapterFile(f.prefix)}, []string{f.prefixed, f.prefix, "already carries a prefix"}, false},
		{"LoRA on a prefixed model", f.prefixed, []session.Option{session.WithAdapterFile(f.lora)}, []string{f.prefixed, "not both"}, false},
		{"prefix on LoRA inputs", f.input, []session.Option{session.WithAdapterFile(f.prefix)}, []string{f.input, "not both"}, false},
		{"bad spill size", f.base, []session.Option{session.WithSpillAbove(0)}, []string{"WithSpillAbove"}, false},
		{"nil adapter", f.base, []session.Option{session.WithAdapter(nil)}, []string{"nil adapter"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := session.Open(c.model, c.opts...)
			if err == nil {
				s.Close()
				t.Fatal("got no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if c.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q is not fs.ErrNotExist", err)
			}
		})
	}
	var s *session.Session
	if err := s.Close(); err != nil {
		t.Errorf("Close of a nil Session: %v", err)
	}
}
