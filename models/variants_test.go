package models

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// variantBuilders are the builds of this package's newer options and
// families, checked as TestBuild checks the others.
var variantBuilders = []struct {
	name   string
	build  func() (*graph.Model, error)
	params int64
}{
	{"bert-mlm", func() (*graph.Model, error) { c := BERTTiny(); c.Head = BERTMaskedLM; return BERT(c) }, func() int64 { c := BERTTiny(); c.Head = BERTMaskedLM; return c.NumParams() }()},
	{"bert-token", func() (*graph.Model, error) { c := BERTTiny(); c.Head = BERTTokenClassification; return BERT(c) }, func() int64 { c := BERTTiny(); c.Head = BERTTokenClassification; return c.NumParams() }()},
	{"bert-tf-int32", func() (*graph.Model, error) {
		c := BERTTiny()
		c.TokenTypeIDs, c.InputNames, c.IDType = true, TFBERTInputNames(), dtype.Int32
		return BERT(c)
	}, BERTTiny().NumParams()},
	{"hybrid", func() (*graph.Model, error) { return Hybrid(HybridTiny()) }, -1},
}

func TestBuildVariants(t *testing.T) {
	for _, tc := range variantBuilders {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range m.Graph().Node {
				if n.Domain != "" || !slices.Contains(allowedOps, n.OpType) {
					t.Errorf("node %q: op %s.%s is outside the promised set", n.Name, n.Domain, n.OpType)
				}
			}
			w, err := WeightsOf(m)
			if err != nil {
				t.Fatal(err)
			}
			if got := w.NumParams(); tc.params >= 0 && got != tc.params {
				t.Errorf("parameters: got %d want %d (NumParams)", got, tc.params)
			}
			if len(w) != len(m.Graph().Initializer) {
				t.Errorf("%d weights but %d initializers: only weights should be initializers", len(w), len(m.Graph().Initializer))
			}
		})
	}
	c := BERTTiny()
	c.TokenTypeIDs, c.InputNames, c.IDType = true, TFBERTInputNames(), dtype.Int32
	m, _ := BERT(c)
	var got []string
	for _, v := range m.Graph().Input {
		got = append(got, valueText(v))
	}
	want := "input_ids int32 [batch_size sequence_length]; input_mask int32 [batch_size sequence_length]; segment_ids int32 [batch_size sequence_length]"
	if strings.Join(got, "; ") != want {
		t.Errorf("TF BERT inputs: got %s want %s", strings.Join(got, "; "), want)
	}
	c = BERTTiny()
	c.Head = "regression"
	if _, err := BERT(c); err == nil || !strings.Contains(err.Error(), `head "regression"`) {
		t.Errorf("bad head: got %v", err)
	}
}

// TestVariantsCompute runs LLaMA tiny and each variant of it on the same
// tokens, the second run with the cache of the first: the logits agree.
func TestVariantsCompute(t *testing.T) {
	c := LlamaTiny()
	c.InitStd = testStd
	variants := []struct {
		name string
		edit func(*graph.Model) error
	}{
		{"int32", func(m *graph.Model) error { return Int32Inputs(m, "input_ids", "attention_mask", "position_ids") }},
		{"whisper names", WhisperCacheNames},
		{"single past", SinglePast},
	}
	base, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	want := runTwice(t, base, "")
	for _, v := range variants {
		m, err := Llama(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.edit(m); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		got := runTwice(t, m, v.name)
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-5 {
				t.Fatalf("%s: logit %d: got %v want %v", v.name, i, got[i], want[i])
			}
		}
	}
	m, _ := Llama(c)
	if err := Int32Inputs(m, "pixel_values"); err == nil || !strings.Contains(err.Error(), `no input "pixel_values"`) {
		t.Errorf("unknown input: got %v", err)
	}
}

// runTwice runs m on 3 tokens with an empty cache, then on 2 more with the
// cache it returned, feeding inputs by the layout that variant names, and
// returns both runs' logits.
func runTwice(t *testing.T, m *graph.Model, variant string) []float32 {
	t.Helper()
	s := session(t, m)
	ids := tokens(5, 32, 9)
	intTensor := func(shape []int64, v []int64) *rt.Tensor {
		if variant == "int32" {
			return must(rt.FromInt64s(dtype.Int32, shape, v))
		}
		return ints(t, shape, v)
	}
	cache := map[string]*rt.Tensor{}
	var logits []float32
	for _, part := range [][2]int{{0, 3}, {3, 5}} {
		n := int64(part[1] - part[0])
		in := map[string]*rt.Tensor{
			"input_ids":      intTensor([]int64{1, n}, ids[part[0]:part[1]]),
			"attention_mask": intTensor([]int64{1, int64(part[1])}, slices.Repeat([]int64{1}, part[1])),
			"position_ids":   intTensor([]int64{1, n}, []int64{int64(part[0]), int64(part[0]) + 1, int64(part[0]) + 2}[:n]),
		}
		past := int64(part[0])
		for i := range 2 {
			for _, kind := range []string{"key", "value"} {
				name, out := fmt.Sprintf("past_key_values.%d.%s", i, kind), fmt.Sprintf("present.%d.%s", i, kind)
				if variant == "whisper names" {
					name, out = fmt.Sprintf("past_%s_self_%d", kind, i), fmt.Sprintf("present_%s_self_%d", kind, i)
				}
				if variant == "single past" {
					name, out = "past", "present"
				}
				if x := cache[out]; x != nil {
					in[name] = x
				} else if variant == "single past" {
					in[name] = must(rt.Zeros(dtype.Float32, []int64{4, 1, 2, past, 4}))
				} else {
					in[name] = must(rt.Zeros(dtype.Float32, []int64{1, 2, past, 4}))
				}
			}
		}
		out, err := s.Run(in, nil)
		if err != nil {
			t.Fatalf("%s: %v", variant, err)
		}
		for name, x := range out {
			cache[name] = x
		}
		logits = append(logits, out["logits"].Float32()...)
	}
	return logits
}
