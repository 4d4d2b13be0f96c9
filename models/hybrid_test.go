package models

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	rt "github.com/peftonnx/peftonnx/runtime"
)

func TestHybridValidate(t *testing.T) {
	tests := []struct {
		reason string
		edit   func(*HybridConfig)
		err    string
	}{
		{"no layers", func(c *HybridConfig) { c.Layers = nil }, "there must be layers"},
		{"bad mixer", func(c *HybridConfig) { c.Layers = []HybridLayer{"mamba"} }, `layer 0 is "mamba"`},
		{"kernel 1", func(c *HybridConfig) { c.ConvKernel = 1 }, "conv kernel 1"},
	}
	for _, tc := range tests {
		c := HybridTiny()
		tc.edit(&c)
		if _, err := Hybrid(c); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got %v, want an error containing %q", tc.reason, err, tc.err)
		}
	}
	m, err := Hybrid(HybridTiny())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range m.Graph().Input {
		names = append(names, v.Name)
	}
	want := "input_ids attention_mask position_ids past_conv.0 past_key_values.1.key past_key_values.1.value past_conv.2 past_key_values.3.key past_key_values.3.value"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("inputs: got %s want %s", got, want)
	}
}

// TestHybridPieces feeds a sequence at once, with zero states and empty
// caches, and in two pieces, the second with the states and caches that
// the first returned: the logits agree, so the states carry what the
// convolution needs.
func TestHybridPieces(t *testing.T) {
	c := HybridTiny()
	c.InitStd = testStd
	m, err := Hybrid(c)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, m)
	ids := tokens(7, c.VocabSize, 3)
	run := func(ids []int64, past int, carried map[string]*rt.Tensor) map[string]*rt.Tensor {
		n := int64(len(ids))
		mask := make([]int64, past+len(ids))
		for i := range mask {
			mask[i] = 1
		}
		pos := make([]int64, n)
		for i := range pos {
			pos[i] = int64(past + i)
		}
		in := map[string]*rt.Tensor{"input_ids": ints(t, []int64{1, n}, ids), "attention_mask": ints(t, []int64{1, int64(len(mask))}, mask), "position_ids": ints(t, []int64{1, n}, pos)}
		for i, l := range c.Layers {
			if l == HybridConv {
				name := fmt.Sprintf("past_conv.%d", i)
				if carried != nil {
					in[name] = carried[fmt.Sprintf("present_conv.%d", i)]
				} else {
					in[name] = must(rt.Zeros(dtype.Float32, []int64{1, int64(c.Hidden), 3}))
				}
				continue
			}
			for _, kind := range []string{"key", "value"} {
				name := fmt.Sprintf("past_key_values.%d.%s", i, kind)
				if carried != nil {
					in[name] = carried[fmt.Sprintf("present.%d.%s", i, kind)]
				} else {
					in[name] = must(rt.Zeros(dtype.Float32, []int64{1, 2, 0, 4}))
				}
			}
		}
		out, err := s.Run(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	whole := run(ids, 0, nil)["logits"].Float32()
	first := run(ids[:4], 0, nil)
	second := run(ids[4:], 4, first)["logits"].Float32()
	v := c.VocabSize
	got := append(append([]float32(nil), first["logits"].Float32()...), second...)
	for i := range whole {
		if math.Abs(float64(got[i]-whole[i])) > 1e-5 {
			t.Fatalf("logit %d (token %d): in pieces %v, at once %v", i, i/v, got[i], whole[i])
		}
	}
	// The second piece with zero states instead of the first's gives other
	// logits: the convolution reads its state.
	zeroed := map[string]*rt.Tensor{}
	for name, x := range first {
		zeroed[name] = x
		if strings.HasPrefix(name, "present_conv") {
			zeroed[name] = must(rt.Zeros(dtype.Float32, x.Shape()))
		}
	}
	other := run(ids[4:], 4, zeroed)["logits"].Float32()
	differ := false
	for i := range other {
		differ = differ || math.Abs(float64(other[i]-second[i])) > 1e-4
	}
	if !differ {
		t.Error("zero states gave the logits of the carried ones: the states are not read")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
