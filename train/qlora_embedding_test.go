package train

import (
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
	"github.com/peftonnx/peftonnx/rewrite"
)

// QLoRA on a model whose token embedding is int4 too
// (GatherBlockQuantized, quantize.Options.Embeddings): the table is
// frozen and takes no gradient; LoRA on the int4 layers and prefix tuning
// train, and the packed table comes out bit for bit (trainFor30).

// int4EmbeddingLlama is int4Llama with its token embedding quantized.
func int4EmbeddingLlama(t *testing.T) *graph.Model {
	t.Helper()
	m := int4LlamaWith(t, quantize.Options{Bits: 4, BlockSize: 16, Symmetric: true, Embeddings: true})
	for _, n := range m.Graph().Node {
		if quant.IsGatherNode(n) {
			return m
		}
	}
	t.Fatal("no GatherBlockQuantized node")
	return nil
}

func TestQLoRATrainsWithInt4Embedding(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
	trainFor30(t, int4EmbeddingLlama(t), CausalLM, fusedData(CausalLM, true), 2e-2, func(a *graph.Model) (Summaryish, error) {
		_, sum, err := rewrite.InjectLoRA(a, lc, rewrite.WithSeed(1))
		return Summaryish{sum.Trainable(), len(sum.LoRA)}, err
	})
}

// TestQLoRAGradientsMatchFloatWithInt4Embedding holds the LoRA gradients
// through the int4 layers and the int4 embedding to those through their
// float twin (every packed node a float one of its weights dequantized in
// Go, see dequantizeAll).
func TestQLoRAGradientsMatchFloatWithInt4Embedding(t *testing.T) {
	requireORT(t)
	lc := adapter.DefaultLoRAConfig(qloraTargets...)
	lc.R, lc.Alpha = 4, 8
	grads := func(float bool) (map[string][]float64, []string) {
		m := int4EmbeddingLlama(t)
		if float {
			dequantizeAll(t, m)
		}
		_, sum, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err != nil {
			t.Fatal(err)
		}
		params := sum.Trainable()
		fillAdapter(t, m, params)
		// The int4 embedding stays, off every gradient path.
		return gradientsOn(t, m, CausalLM, params, []string{"/model/embed_tokens/Gather_Q4"}), params
	}
	q, params := grads(false)
	f, _ := grads(true)
	compareGradients(t, q, f, params, 1e-4)
}

func TestPrefixWithInt4Embedding(t *testing.T) {
	requireORT(t)
	trainFor30(t, int4EmbeddingLlama(t), CausalLM, fusedData(CausalLM, false), 5e-2, func(a *graph.Model) (Summaryish, error) {
		_, sum, err := rewrite.InjectPrefix(a, adapter.PrefixConfig{NumPrefixTokens: 3})
		return Summaryish{sum.Trainable(), 0}, err
	})
}

// TestLoRAOnInt4EmbeddingRefused: a LoRA or DoRA target on the int4
// embedding is refused in one line that names it.
func TestLoRAOnInt4EmbeddingRefused(t *testing.T) {
	m := int4EmbeddingLlama(t)
	for _, dora := range []bool{false, true} {
		lc := adapter.DefaultLoRAConfig("model.embed_tokens", ".*_proj")
		lc.UseDoRA = dora
		_, _, err := rewrite.InjectLoRA(m, lc, rewrite.WithSeed(1))
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "model.embed_tokens is an int4 embedding (com.microsoft:GatherBlockQuantized") {
			t.Errorf("dora=%v: error %v, want one line naming the int4 embedding", dora, err)
		}
	}
}
