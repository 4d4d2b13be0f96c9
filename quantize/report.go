package quantize

import (
	"math"
	"sync"

	"github.com/peftonnx/peftonnx/quant"
)

// Report says what Model did.
type Report struct {
	// Options are the options Model ran with, defaults filled in.
	Options Options
	// Linears is the number of linear layers the model has (or that the
	// targets chose).
	Linears int
	// Layers are the layers quantized, in topological order.
	Layers []Layer
	// Embeddings are the embeddings quantized (Options.Embeddings), in
	// topological order. Their errors are not in the totals below, which
	// are the linear layers'.
	Embeddings []Embedding
	// Skipped are the chosen layers left in float, with the reason.
	Skipped []Skipped
	// MaxAbsError is max |W_q − W| over every quantized weight, where W_q
	// is the dequantized weight.
	MaxAbsError float64
	// RelError is ‖W_q − W‖ / ‖W‖ (Frobenius norms) over all quantized
	// weights together.
	RelError float64
	// OutputRelError is ‖x·W_q − x·W‖ / ‖x·W‖ over all quantized layers
	// together, for x of OutputRows rows of standard normal values.
	OutputRelError float64
	// FloatBytes is the size of the float weights (embedding tables
	// included) that were quantized, and PackedBytes the size of the
	// tensors that replace them.
	FloatBytes, PackedBytes int64
}

// OutputRows is the number of rows of the random input on which the output
// error is measured.
const OutputRows = 8

// Layer is one linear layer that Model quantized.
type Layer struct {
	// Module is the layer's module name, Node the float node's name, Op
	// its type ("MatMul" or "Gemm"), and NewNode the MatMulNBits node.
	Module, Node, Op, NewNode string
	// Weight is the float initializer, Tensors the packed ones.
	Weight  string
	Tensors quant.TensorNames
	// K and N are the layer's input and output features.
	K, N int
	// MaxAbsError, RelError and OutputRelError are the Report's errors for
	// this layer alone.
	MaxAbsError, RelError, OutputRelError float64
	// Shared is set on a layer that reads the same weight as a layer
	// before it: it reuses that layer's packed tensors, and the Report's
	// totals count the weight once.
	Shared bool
}

// Skipped is a chosen linear layer that Model left in float.
type Skipped struct {
	Module, Node, Reason string
}

// errorSums accumulates squared errors and norms.
type errorSums struct {
	maxAbs                  float64
	errSq, refSq            float64
	outErrSq, outRefSq      float64
	floatBytes, packedBytes int64
}

// add accounts for one weight w ([k, n]) against its dequantized wq, and
// for the outputs x·w and x·wq; it returns the layer's errors.
func (s *errorSums) add(w, wq []float32, k, n int, x []float32) (maxAbs, rel, outRel float64) {
	var errSq, refSq float64
	for i := range w {
		d := float64(wq[i]) - float64(w[i])
		maxAbs = max(maxAbs, math.Abs(d))
		errSq += d * d
		refSq += float64(w[i]) * float64(w[i])
	}
	// The rows of x are independent: one goroutine each.
	rows := len(x) / k
	errs, refs := make([]float64, rows), make([]float64, rows)
	var wg sync.WaitGroup
	for r := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			y, yq := make([]float64, n), make([]float64, n)
			for i := range k {
				xi := float64(x[r*k+i])
				row, rowq := w[i*n:(i+1)*n], wq[i*n:(i+1)*n]
				for j := range n {
					y[j] += xi * float64(row[j])
					yq[j] += xi * float64(rowq[j])
				}
			}
			for j := range n {
				d := yq[j] - y[j]
				errs[r] += d * d
				refs[r] += y[j] * y[j]
			}
		}()
	}
	wg.Wait()
	var outErrSq, outRefSq float64
	for r := range rows {
		outErrSq += errs[r]
		outRefSq += refs[r]
	}
	s.maxAbs = max(s.maxAbs, maxAbs)
	s.errSq += errSq
	s.refSq += refSq
	s.outErrSq += outErrSq
	s.outRefSq += outRefSq
	return maxAbs, ratio(errSq, refSq), ratio(outErrSq, outRefSq)
}

// ratio returns sqrt(a/b), or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Sqrt(a / b)
}
