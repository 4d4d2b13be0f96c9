package rewrite

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// wholeVGains returns the gains of DoRA adapter ad on base as StackDoRA
// computed them while it kept a float32 copy of each weight: the whole
// V = α·W + s·A·B in float64, then its column norms.
func wholeVGains(t *testing.T, base *graph.Model, ad *adapter.Adapter) map[string][]float32 {
	t.Helper()
	linears, err := FindLinears(base)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for key, w := range ad.Weights {
		i := slices.IndexFunc(linears, func(l Linear) bool { return l.Module == key || strings.HasSuffix(l.Module, "."+key) })
		if i < 0 {
			t.Fatalf("adapter module %q matches no layer", key)
		}
		l := linears[i]
		vals, err := base.Float32s(base.Initializer(l.Weight))
		if err != nil {
			t.Fatal(err)
		}
		s := ad.LoRA.ScalingFor(key)
		v := scaledWeight(l, vals)
		in, o, r := int(l.In), int(l.Out), int(w.A.Shape[1])
		for i := range in {
			row := v[i*o : (i+1)*o]
			for k := range r {
				sa := s * float64(w.A.Data[i*r+k])
				for j, b := range w.B.Data[k*o : (k+1)*o] {
					row[j] += sa * float64(b)
				}
			}
		}
		g, err := doraGains(l, w.Magnitude.Data, columnNorms(v, in, o))
		if err != nil {
			t.Fatal(err)
		}
		g32 := make([]float32, o)
		for j, x := range g {
			g32[j] = float32(x)
		}
		out[l.Module] = g32
	}
	return out
}

// TestStackDoRAGainsFromModel: the gains that Factors computes reading
// each weight from the stacked model, a row at a time, are bit for bit
// those of the whole V (float32 and float16 weights, MatMul and Gemm,
// transposed, α), on the one-layer models and the built decoders.
func TestStackDoRAGainsFromModel(t *testing.T) {
	type gcase struct {
		name string
		base *graph.Model
		ad   *adapter.Adapter
	}
	var cases []gcase
	for i, tc := range layerCases {
		if tc.transA || tc.enable != nil {
			continue
		}
		base, _, _ := layerModel(t, tc, newRand(uint64(i)+60))
		cases = append(cases, gcase{tc.name, base, doraAdapter(tc, uint64(i)+160)})
	}
	for _, tm := range builtModels {
		if !slices.Contains([]string{"llama", "llama-fp16", "gpt2-gemm"}, tm.name) {
			continue
		}
		base := tm.load(t)
		linears, err := FindLinears(base)
		if err != nil {
			t.Fatal(err)
		}
		var mods []string
		for _, l := range linears[:4] {
			mods = append(mods, regexp.QuoteMeta(l.Module))
		}
		cfg := config(2, 4, mods...)
		cfg.UseDoRA = true
		ad := stackTestAdapter(t, base, cfg, 11)
		for _, w := range ad.Weights {
			for j := range w.Magnitude.Data {
				w.Magnitude.Data[j] *= float32(0.8 + 0.05*float64(j%5))
			}
		}
		cases = append(cases, gcase{tm.name, base, ad})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer c.base.Close()
			want := wholeVGains(t, c.base, c.ad)
			stacked := c.base.Clone()
			defer stacked.Close()
			st, err := StackDoRA(stacked)
			if err != nil {
				t.Fatal(err)
			}
			f, err := st.Factors(c.ad)
			if err != nil {
				t.Fatal(err)
			}
			for mod, g := range want {
				if !slices.Equal(f[mod].Gain, g) {
					t.Errorf("%s: gain %v, the whole V's %v", mod, f[mod].Gain, g)
				}
			}
		})
	}
}

// TestStackDoRAClose: a stack of StackDoRA reads the weights of a model
// with external data after that model closes, and after Stacked.Close a
// DoRA adapter's Factors is an error that says so (no read of unmapped
// memory); a LoRA adapter's factors, which read no weight, still come.
func TestStackDoRAClose(t *testing.T) {
	tc := layerCases[0]
	base, _, _ := layerModel(t, tc, newRand(3))
	defer base.Close()
	dora, lora := doraAdapter(tc, 4), layerAdapter(tc, newRand(5))
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := base.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	m, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := StackDoRA(m)
	if err != nil {
		t.Fatal(err)
	}
	want, err := st.Factors(dora)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := st.Factors(dora)
	if err != nil || !slices.Equal(got["layer.proj"].Gain, want["layer.proj"].Gain) {
		t.Fatalf("Factors after the model closed: gain %v, %v; want %v", got["layer.proj"].Gain, err, want["layer.proj"].Gain)
	}
	for range 2 {
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Factors(dora); err == nil || !strings.Contains(err.Error(), "closed") || !strings.Contains(err.Error(), "layer.proj") {
		t.Errorf("Factors of a DoRA adapter after Close: %v, want an error naming layer.proj and saying the stack closed", err)
	}
	if _, err := st.Factors(lora); err != nil {
		t.Errorf("Factors of a LoRA adapter after Close: %v", err)
	}
	plain := base.Clone()
	defer plain.Close()
	pst, err := StackLoRA(plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := pst.Close(); err != nil {
		t.Errorf("Close of a stack of StackLoRA: %v", err)
	}
}
