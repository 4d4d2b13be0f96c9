package rewrite

import (
	"regexp"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestStackLoRA runs one batch whose rows use the base, one adapter and
// another of a different rank on other layers, on a stacked model, and
// holds each row to the model with that adapter merged (the base for row
// 0), on ONNX Runtime.
func TestStackLoRA(t *testing.T) {
	for _, tm := range builtModels {
		if tm.name == "bert" || tm.name == "gpt2-anon" || tm.name == "convlm" { // convlm: one linear layer
			continue
		}
		t.Run(tm.name, func(t *testing.T) {
			base := tm.load(t)
			linears, err := FindLinears(base)
			if err != nil {
				t.Fatal(err)
			}
			target := func(ls []Linear) []string {
				var out []string
				for _, l := range ls {
					out = append(out, regexp.QuoteMeta(l.Module))
				}
				return out
			}
			ads := []*adapter.Adapter{
				stackTestAdapter(t, base, config(2, 4, target(linears[:2])...), 5),
				stackTestAdapter(t, base, config(3, 6, target(linears[2:5])...), 6),
			}
			stacked := base.Clone()
			defer stacked.Close()
			st, err := StackLoRA(stacked)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Sites) == 0 || st.Sites[0].Module != linears[0].Module {
				t.Fatalf("sites %v, want one per module of %v", st.Sites, linears)
			}
			bs := session(t, base)
			feeds := feedsFor(t, bs, 3, 2, tm.past, 9)
			want := []map[string]*rt.Tensor{run(t, bs, feeds)}
			for _, ad := range ads {
				merged := base.Clone()
				defer merged.Close()
				if err := MergeAdapter(merged, ad); err != nil {
					t.Fatal(err)
				}
				want = append(want, run(t, session(t, merged), feeds))
			}

			sfeeds := map[string]*rt.Tensor{}
			for k, v := range feeds {
				sfeeds[k] = v
			}
			var factors []map[string]StackedFactor
			for _, ad := range ads {
				f, err := st.Factors(ad)
				if err != nil {
					t.Fatal(err)
				}
				factors = append(factors, f)
			}
			for _, s := range st.Sites {
				r := 1
				for _, f := range factors {
					r = max(r, f[s.Module].R)
				}
				in, out := int(s.In), int(s.Out)
				a, b := make([]float32, 3*in*r), make([]float32, 3*r*out)
				for k, f := range factors {
					fa, ok := f[s.Module]
					if !ok {
						continue
					}
					for i := range in {
						for c := range fa.R {
							a[((k+1)*in+i)*r+c] = fa.A[i*fa.R+c]
						}
					}
					for c := range fa.R {
						for o := range out {
							b[((k+1)*r+c)*out+o] = fa.B[c*out+o]
						}
					}
				}
				sfeeds[s.A] = mustT(t)(rt.NewFloat32([]int64{3, int64(in), int64(r)}, a))
				sfeeds[s.B] = mustT(t)(rt.NewFloat32([]int64{3, int64(r), int64(out)}, b))
			}
			sfeeds[StackedIndexInput] = mustT(t)(rt.NewInt64([]int64{3}, []int64{0, 1, 2}))
			got := run(t, session(t, stacked), sfeeds)
			for row, w := range want {
				for name, wt := range w {
					g := rowOf(t, got[name], row)
					if d, _ := maxRelDiff(t, map[string]*rt.Tensor{name: g}, map[string]*rt.Tensor{name: rowOf(t, wt, row)}); d > tm.tol {
						t.Errorf("row %d, output %s: differs from the merged model by %g", row, name, d)
					}
				}
			}
			if d, _ := maxRelDiff(t, want[1], want[0]); d < 1e-3 {
				t.Fatalf("the adapter changes the outputs by %g only; the test proves nothing", d)
			}
		})
	}
}

// stackTestAdapter injects cfg into a copy of base with random B and
// returns the adapter.
func stackTestAdapter(t *testing.T, base *graph.Model, cfg adapter.LoRAConfig, seed uint64) *adapter.Adapter {
	t.Helper()
	m := base.Clone()
	defer m.Close()
	sites, _, err := InjectLoRA(m, cfg, WithSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(t, m, sites, seed, 0.2)
	ad, err := Extract(m)
	if err != nil {
		t.Fatal(err)
	}
	return ad
}

func mustT(t *testing.T) func(*rt.Tensor, error) *rt.Tensor {
	return func(x *rt.Tensor, err error) *rt.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
}

// rowOf returns row b of x along axis 0, or, for a stacked past
// [2, batch, …], along axis 1; as float64.
func rowOf(t *testing.T, x *rt.Tensor, b int) *rt.Tensor {
	t.Helper()
	shape := x.Shape()
	v := x.ToFloat64()
	axis := 0
	if len(shape) == 5 && shape[0] == 2 {
		axis = 1
	}
	outer := 1
	for _, d := range shape[:axis] {
		outer *= int(d)
	}
	inner := len(v) / outer / int(shape[axis])
	var out []float64
	for o := range outer {
		start := (o*int(shape[axis]) + b) * inner
		out = append(out, v[start:start+inner]...)
	}
	rs := append([]int64(nil), shape...)
	rs[axis] = 1
	return mustT(t)(rt.NewFloat64(rs, out))
}
