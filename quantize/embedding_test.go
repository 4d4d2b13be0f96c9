package quantize_test

import (
	"math"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/quantize"
)

// TestModelEmbeddings checks that Options.Embeddings puts a
// GatherBlockQuantized node in the token embedding's place, that the
// quantized model computes what the linear-only quantized model computes
// with its table replaced by a Go dequantize of the same blocks, and that
// the reported RTN error is the table's.
func TestModelEmbeddings(t *testing.T) {
	const table = "model.embed_tokens.weight"
	requireORT(t)
	for _, sym := range []bool{false, true} {
		m := llamaTiny(t)
		ref := m.Clone()
		values, err := m.Float32s(m.Initializer(table))
		if err != nil {
			t.Fatal(err)
		}
		o := quantize.Options{BlockSize: 16, Symmetric: sym, Embeddings: true}
		rep, err := quantize.Model(m, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Embeddings) != 1 || len(rep.Layers) != 15 {
			t.Fatalf("symmetric=%v: %d embeddings and %d layers quantized, want 1 and 15", sym, len(rep.Embeddings), len(rep.Layers))
		}
		e := rep.Embeddings[0]
		if e.Module != "model.embed_tokens" || e.NewNode != "/model/embed_tokens/Gather_Q4" || e.Weight != table || e.Tensors.B != table+"_Q4" || e.Vocab != 32 || e.Dim != 16 {
			t.Errorf("symmetric=%v: embedding %+v", sym, e)
		}
		if n := m.NodeByName(e.NewNode); n == nil || !quant.IsGatherNode(n) || n.Input[1] != "input_ids" {
			t.Fatalf("symmetric=%v: no GatherBlockQuantized node %q reading input_ids", sym, e.NewNode)
		}
		if m.Initializer(table) != nil {
			t.Errorf("symmetric=%v: the float table is still there", sym)
		}

		// The reference: the same linear layers, the table dequantized in Go.
		o.Embeddings = false
		if _, err := quantize.Model(ref, o); err != nil {
			t.Fatal(err)
		}
		const vocab, dim = 32, 16
		tr := make([]float32, len(values))
		for v := range vocab {
			for h := range dim {
				tr[h*vocab+v] = values[v*dim+h]
			}
		}
		w, err := quant.Quantize(tr, dim, vocab, quant.Options{BlockSize: 16, Symmetric: sym})
		if err != nil {
			t.Fatal(err)
		}
		deq, err := w.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		rows := make([]float32, len(values))
		var errSq, refSq float64
		for v := range vocab {
			for h := range dim {
				rows[v*dim+h] = deq[h*vocab+v]
				d := float64(deq[h*vocab+v]) - float64(values[v*dim+h])
				errSq += d * d
				refSq += float64(values[v*dim+h]) * float64(values[v*dim+h])
			}
		}
		ref.AddInitializer(graph.NewFloat32Tensor(table, dtype.Float32, []int64{vocab, dim}, rows))
		if got, want := e.RelError, math.Sqrt(errSq/refSq); math.Abs(got-want) > 1e-9*want {
			t.Errorf("symmetric=%v: reported RTN error %.6g, want %.6g", sym, got, want)
		}
		in := decoderInputs(8, vocab)
		if d := relMax(runDecoder(t, m, in, true), float64s(runDecoder(t, ref, in, true))); d > 1e-5 {
			t.Errorf("symmetric=%v: outputs differ from the dequantized table's by %.3g relative, want ≤ 1e-5", sym, d)
		}
		t.Logf("symmetric=%v: RTN error of the embedding %.4g (max %.4g)", sym, e.RelError, e.MaxAbsError)
	}
}

// TestModelEmbeddingsSkipped checks that embeddings GatherBlockQuantized
// cannot hold are listed and left float.
func TestModelEmbeddingsSkipped(t *testing.T) {
	for _, c := range []struct {
		o    quantize.Options
		want string
	}{
		{quantize.Options{Embeddings: true}, "not whole blocks of 32"},
		{quantize.Options{Embeddings: true, Bits: 2, BlockSize: 16}, "GatherBlockQuantized takes 4 or 8"},
	} {
		m := llamaTiny(t)
		rep, err := quantize.Model(m, c.o)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Embeddings) != 0 || len(rep.Skipped) != 1 || rep.Skipped[0].Module != "model.embed_tokens" || !strings.Contains(rep.Skipped[0].Reason, c.want) {
			t.Errorf("%+v: embeddings %v, skipped %+v, want the embedding skipped because %q", c.o, rep.Embeddings, rep.Skipped, c.want)
		}
		if m.Initializer("model.embed_tokens.weight") == nil {
			t.Errorf("%+v: the float table is gone", c.o)
		}
	}
}

func float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// TestModelTiedEmbedding: with Options.Embeddings a table that lm_head
// also reads (through a Transpose) becomes lm_head's packed copy and the
// embedding's, the float table and the Transpose go, and the graph runs
// close to the float one, float32 and float16 alike.
func TestModelTiedEmbedding(t *testing.T) {
	for _, dt := range []dtype.Type{dtype.Float32, dtype.Float16} {
		build := func(m *graph.Model) {
			m.AddInput(graph.TensorInfo("ids", dtype.Int64, []int64{3}))
			m.AddInitializer(weight("embed.weight", dt, 40, 32))
			m.NewNode("Gather", "/embed/Gather", []string{"embed.weight", "ids"}, []string{"h"})
			m.NewNode("Transpose", "/lm_head/Transpose", []string{"embed.weight"}, []string{"wt"}, graph.AttrInts("perm", 1, 0))
			m.NewNode("MatMul", "/lm_head/MatMul", []string{"h", "wt"}, []string{"logits"})
			m.AddOutput(graph.TensorInfo("logits", dt, []int64{3, 40}))
		}
		float, m := tinyGraph(t, build), tinyGraph(t, build)
		rep, err := quantize.Model(m, quantize.Options{BlockSize: 16, Embeddings: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Layers) != 1 || len(rep.Embeddings) != 1 {
			t.Fatalf("%s: %d layers and %d embeddings quantized, want 1 and 1", dt, len(rep.Layers), len(rep.Embeddings))
		}
		for _, gone := range []string{"embed.weight", "wt"} {
			if m.Initializer(gone) != nil || m.Producer(gone) != nil {
				t.Errorf("%s: %s is still there", dt, gone)
			}
		}
		if b1, b2 := rep.Layers[0].Tensors.B, rep.Embeddings[0].Tensors.B; b1 == b2 || m.Initializer(b1) == nil || m.Initializer(b2) == nil {
			t.Errorf("%s: packed tensors %q (lm_head) and %q (embedding), want two", dt, b1, b2)
		}
		if d := outputsDiffer(t, float, m); d > 0.2 {
			t.Errorf("%s: logits move by %.3g relative, want ≤ 0.2", dt, d)
		} else {
			t.Logf("%s: logits move by %.3g relative; embedding RTN error %.3g", dt, d, rep.Embeddings[0].RelError)
		}
	}
}
