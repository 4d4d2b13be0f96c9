package combine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
)

// TestMergedIntoLlama applies combined adapters to the models/ LLaMA
// (rewrite.Apply, then rewrite.Merge) and checks every merged weight
// against W + the delta that each method's math predicts, computed here
// from the inputs: Σ w_i·s_i·A_i·B_i for cat, PEFT's product of sums for
// linear, and the best rank-k approximation of the sum for svd. The
// inputs: a1 (r 2, alpha 4) on q_proj and v_proj of both layers; a2 (r 2,
// alpha 8, rsLoRA) on the same and on layer 0's down_proj, so that cat
// gives that module a smaller rank (a rank_pattern entry).
func TestMergedIntoLlama(t *testing.T) {
	base, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	linears, err := rewrite.FindLinears(base)
	if err != nil {
		t.Fatal(err)
	}
	layers := map[string]rewrite.Linear{}
	for _, l := range linears {
		layers[l.Module] = l
	}
	rng := rand.New(rand.NewPCG(10, 10))
	factors := func(module string) adapter.LoRAWeights {
		l := layers[module]
		return randomFactors(rng, int(l.In), 2, int(l.Out))
	}
	shared := []string{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}
	w1, w2 := map[string]adapter.LoRAWeights{}, map[string]adapter.LoRAWeights{}
	for _, m := range shared {
		w1[m], w2[m] = factors(m), factors(m)
	}
	w2["model.layers.0.mlp.down_proj"] = factors("model.layers.0.mlp.down_proj")
	in := inputs(lora(2, 4, false, w1), lora(2, 8, true, w2))
	weights := []float64{0.7, -1.3}

	predict := map[combine.Method]func(m string) dense{
		combine.Cat: func(m string) dense { return weightedSum(in, weights, m) },
		combine.Linear: func(m string) dense {
			var sumA, sumB dense
			for i, x := range in {
				w, ok := x.Adapter.Weights[m]
				if !ok {
					continue
				}
				c := weights[i] * x.Adapter.LoRA.ScalingFor(m)
				a, b := denseOf(w.A).scale(math.Copysign(math.Sqrt(math.Abs(c)), c)), denseOf(w.B).scale(math.Sqrt(math.Abs(c)))
				if sumA == nil {
					sumA, sumB = a, b
				} else {
					sumA, sumB = sumA.add(a), sumB.add(b)
				}
			}
			return sumA.mul(sumB)
		},
		combine.SVD: func(m string) dense {
			best, _ := bestRank(weightedSum(in, weights, m), 3)
			return best
		},
	}
	before, err := models.WeightsOf(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []combine.Method{combine.Cat, combine.Linear, combine.SVD} {
		o := combine.Options{Method: method, Weights: weights}
		if method == combine.SVD {
			o.Rank = 3
		}
		ad := mustCombine(t, in, o)
		if method == combine.Cat && ad.LoRA.RankFor("model.layers.0.mlp.down_proj") != 2 {
			t.Fatalf("cat: down_proj has rank %d, want 2", ad.LoRA.RankFor("model.layers.0.mlp.down_proj"))
		}
		m, err := models.Llama(models.LlamaTiny())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rewrite.Apply(m, ad); err != nil {
			t.Fatalf("%s: Apply: %v", method, err)
		}
		if err := rewrite.Merge(m); err != nil {
			t.Fatalf("%s: Merge: %v", method, err)
		}
		after, err := models.WeightsOf(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range linears {
			if l.WeightTransposed {
				t.Fatalf("%s: the weight is stored [out, in]; this test reads it as [in, out]", l.Module)
			}
			w0, w := before[l.Weight], after[l.Weight]
			var d dense
			if _, ok := ad.Weights[l.Module]; ok {
				d = predict[method](l.Module)
			}
			worst := 0.0
			for i := 0; i < int(l.In); i++ {
				for j := 0; j < int(l.Out); j++ {
					want := float64(w0.Data[i*int(l.Out)+j])
					if d != nil {
						want += d[i][j]
					}
					worst = math.Max(worst, math.Abs(float64(w.Data[i*int(l.Out)+j])-want))
				}
			}
			if worst > 2e-5 {
				t.Errorf("%s: %s: merged weight differs from W + predicted delta by %g", method, l.Module, worst)
			}
		}
	}
}
