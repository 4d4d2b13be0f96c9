package train

import (
	"fmt"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// LoRA on q and v inside fused attention (PaddleNLP's enable_lora_list):
// in the packed weight of the transformer optimizer's Attention nodes
// (GPT-2, BERT) and in the model builder's packed qkv_proj feeding
// GroupQueryAttention. Each trains, and on the optimizer's graphs the
// gradients equal those through the standard-op twin, whose q, k and v
// come from a MatMul of the same packed weight.

// qvFixture is a fixture with LoRA on the q and v parts of its packed
// projections (fused: the Attention layers or qkv_proj; twin: the
// twin's packed MatMuls) beside its other targets.
type qvFixture struct {
	fusedFixture
	fused, twin string // the packed projections, as targets
}

func qvFixtures() []qvFixture {
	var out []qvFixture
	for _, f := range fusedFixtures() {
		switch f.name {
		case "optimizer-gpt2":
			out = append(out, qvFixture{f, ".*c_attn", `transformer\.h\.\d\.attn`})
		case "optimizer-bert":
			out = append(out, qvFixture{f, "Attention_.*", `bert\.encoder\.layer\.\d\.attention\.self`})
		case "model-builder-packed":
			out = append(out, qvFixture{f, ".*qkv_proj", ""})
		}
	}
	return out
}

// qvLoRA is rank-4 LoRA on the q and v parts of packed, and plain LoRA on
// the fixture's own targets.
func qvLoRA(f qvFixture, packed string) adapter.LoRAConfig {
	lc := adapter.DefaultLoRAConfig(append([]string{packed}, f.targets...)...)
	lc.R, lc.Alpha = 4, 8
	lc.EnableLoRAList = adapter.EnableLoRAList{PerTarget: [][]bool{{true, false, true}}}
	lc.HeadDim = 16 // the twins' hidden size: their packed parts are contiguous
	return lc
}

// TestLoRAInsideFusedAttentionTrains trains for 30 steps: the loss falls
// and the frozen weights, the packed ones included, come out bit for bit.
func TestLoRAInsideFusedAttentionTrains(t *testing.T) {
	requireORT(t)
	for _, f := range qvFixtures() {
		t.Run(f.name, func(t *testing.T) {
			m, err := f.build(false)
			if err != nil {
				t.Fatal(err)
			}
			// Half the fixture's rate: q and v inside attention add to what
			// the fixture's own targets train, and at its full rate BERT
			// overshoots.
			trainFor30(t, m, f.task, fusedData(f.task, f.task == CausalLM), f.lr/2, func(a *graph.Model) (Summaryish, error) {
				sites, sum, err := rewrite.InjectLoRA(a, qvLoRA(f, f.fused), rewrite.WithSeed(1))
				if err == nil && sites[0].Widths == nil {
					t.Errorf("site %s has no q, k, v widths", sites[0].Module)
				}
				return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
			})
		})
	}
}

// TestLoRAInsideAttentionMatchesTwin holds the gradients of LoRA on q and
// v inside Attention (and of the fixture's other LoRA) to the twin's, and
// those of DoRA, whose Attention layers rescale the packed weight where
// the twin's MatMul rescales its output.
func TestLoRAInsideAttentionMatchesTwin(t *testing.T) {
	requireORT(t)
	for _, f := range qvFixtures() {
		if f.twin == "" {
			continue
		}
		for _, dora := range []bool{false, true} {
			name := f.name
			if dora {
				name += "-dora"
			}
			t.Run(name, func(t *testing.T) { matchTwinQV(t, f, dora) })
		}
	}
}

// matchTwinQV is one case of TestLoRAInsideAttentionMatchesTwin.
func matchTwinQV(t *testing.T, f qvFixture, dora bool) {
	grads := func(unfused bool, packed string) (map[string][]float64, []string) {
		m, err := f.build(unfused)
		if err != nil {
			t.Fatal(err)
		}
		lc := qvLoRA(f, packed)
		lc.UseDoRA = dora
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		params := sum.Trainable()
		fillAdapterByPosition(t, m, params)
		return gradientsOn(t, m, f.task, params, f.before[:1]), params
	}
	fused, params := grads(false, f.fused)
	twin, twinParams := grads(true, f.twin)
	if len(params) != len(twinParams) {
		t.Fatalf("%d LoRA tensors, the twin %d", len(params), len(twinParams))
	}
	// The packed layers' modules are named differently in the twin
	// (from the MatMul's node path): compare tensor by position.
	for i, p := range twinParams {
		twin[autodiff.GradName(params[i])] = twin[autodiff.GradName(p)]
	}
	compareGradients(t, fused, twin, params, f.tol)
}

// fillAdapterByPosition fills params as fillAdapter does, each from a
// name that is its position, so that two models whose LoRA tensors are
// named differently get the same values in the same order.
func fillAdapterByPosition(t *testing.T, m *graph.Model, params []string) {
	t.Helper()
	for i, p := range params {
		renamed := m.Clone()
		key := fmt.Sprintf("lora tensor %d", i)
		init := renamed.RemoveInitializer(p)
		if init == nil {
			t.Fatalf("no initializer %s", p)
		}
		init.Name = key
		renamed.AddInitializer(init)
		fillAdapter(t, renamed, []string{key})
		filled := renamed.Initializer(key)
		filled.Name = p
		m.RemoveInitializer(p)
		m.AddInitializer(filled)
	}
}
