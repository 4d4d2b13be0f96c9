package quantize

import (
	"fmt"
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/rewrite"
)

// Embedding is one embedding that Model quantized (Options.Embeddings):
// a Gather of a [Vocab, Dim] float table that became a com.microsoft
// GatherBlockQuantized node, its rows cut into blocks along Dim.
type Embedding struct {
	// Module is the layer's module name, Node the Gather's name and
	// NewNode the GatherBlockQuantized node's.
	Module, Node, NewNode string
	// Weight is the float table, Tensors the packed ones (B is the data
	// input).
	Weight  string
	Tensors quant.TensorNames
	// Vocab and Dim are the table's rows and columns.
	Vocab, Dim int
	// MaxAbsError is max |E_q − E| and RelError ‖E_q − E‖/‖E‖ over the
	// table, E_q dequantized: the RTN error of the embedding, which is also
	// the error of every row it looks up.
	MaxAbsError, RelError float64
}

// embeddings returns the embeddings of m that Options.Embeddings
// quantizes, found before anything changes.
func embeddings(m *graph.Model) ([]rewrite.Linear, error) {
	layers, err := rewrite.FindLayers(m)
	if err != nil {
		return nil, err
	}
	var out []rewrite.Linear
	for _, l := range layers {
		if l.Kind == rewrite.KindEmbedding {
			out = append(out, l)
		}
	}
	return out, nil
}

// unsupportedEmbedding returns why embedding l cannot become a
// GatherBlockQuantized node under o, or "".
func unsupportedEmbedding(m *graph.Model, l rewrite.Linear, o Options) string {
	switch {
	case m.Input(l.Weight) != nil:
		return fmt.Sprintf("its table %q is also a graph input", l.Weight)
	case l.DType != dtype.Float32 && l.DType != dtype.Float16:
		return fmt.Sprintf("it gathers %s, and ONNX Runtime's CPU GatherBlockQuantized outputs float32 or float16", l.DType)
	case !quant.GatherBits(o.Bits):
		return fmt.Sprintf("%d bits: GatherBlockQuantized takes 4 or 8", o.Bits)
	case l.Out%int64(o.BlockSize) != 0:
		return fmt.Sprintf("rows of %d values are not whole blocks of %d", l.Out, o.BlockSize)
	}
	return ""
}

// embedding replaces the Gather of embedding l by a GatherBlockQuantized
// node over its table quantized as o asks, the table's transpose rounded
// as a MatMulNBits weight is (quant.Quantize), so that each row's blocks
// run along its Dim values.
func (q *quantizer) embedding(l rewrite.Linear, sums *errorSums) (Embedding, error) {
	m, o := q.m, q.o
	vocab, dim := int(l.In), int(l.Out)
	table, err := m.Float32s(m.Initializer(l.Weight))
	if err != nil {
		return Embedding{}, err
	}
	t := make([]float32, len(table)) // [dim, vocab]
	for v := range vocab {
		for h := range dim {
			t[h*vocab+v] = table[v*dim+h]
		}
	}
	w, err := quant.Quantize(t, dim, vocab, quant.Options{Bits: o.Bits, BlockSize: o.BlockSize, Symmetric: o.Symmetric, ScaleType: l.DType})
	if err != nil {
		return Embedding{}, err
	}
	deq, err := w.Dequantize()
	if err != nil {
		return Embedding{}, err
	}
	var maxAbs, errSq, refSq float64
	for i, x := range t {
		d := float64(deq[i]) - float64(x)
		maxAbs = max(maxAbs, math.Abs(d))
		errSq += d * d
		refSq += float64(x) * float64(x)
	}
	names, err := q.addPacked(l, w, w.GatherTensors, len(table), sums)
	if err != nil {
		return Embedding{}, err
	}
	name := q.nodeName(l)
	node, err := w.GatherNode(names, name, l.Input, l.Output)
	if err != nil {
		return Embedding{}, err
	}
	q.replace(l, node)
	return Embedding{
		Module: l.Module, Node: l.NodeName, NewNode: name, Weight: l.Weight, Tensors: names,
		Vocab: vocab, Dim: dim, MaxAbsError: maxAbs, RelError: ratio(errSq, refSq),
	}, nil
}
