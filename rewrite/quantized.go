package rewrite

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// A QDQ model (int8 quantization as ONNX Runtime's quantizer writes it)
// stores a linear layer's weight as an integer initializer that a
// DequantizeLinear turns into floats: MatMul(x, DequantizeLinear(Wq, scale,
// zero_point)). LoRA adapts the float side: the branch reads the float
// activation and adds to the float output, and the int8 weight stays as it
// is. A merge cannot be exact in int8, since W + s·A·B is not on the
// quantization grid; MergeOptions can merge into a dequantized float weight
// instead (DequantizeMerged).

// dequantizedWeight reports whether DequantizeLinear p dequantizes an
// integer initializer of the given rank, and returns it and the element
// type of p's output (its scale's).
func dequantizedWeight(m *graph.Model, p *onnxpb.NodeProto, rank int) (*onnxpb.TensorProto, dtype.Type, bool) {
	if len(p.Input) < 2 {
		return nil, 0, false
	}
	t, scale := m.Initializer(p.Input[0]), m.Initializer(p.Input[1])
	if t == nil || scale == nil || len(t.Dims) != rank || graph.TypeOf(t).IsFloat() || !graph.TypeOf(scale).IsFloat() {
		return nil, 0, false
	}
	return t, graph.TypeOf(scale), true
}

// Dequantized reports whether l's weight is an integer initializer behind
// a DequantizeLinear.
func (l Linear) Dequantized() bool {
	return len(l.WeightChain) > 0 && l.WeightChain[0].OpType == "DequantizeLinear"
}

// Dequantize makes Merge and MergeAdapter merge into a weight behind
// DequantizeLinear: the DequantizeLinear goes, and its output becomes a
// float initializer holding (Wq − zero_point)·scale + s·A·B (per tensor or
// per axis; blocked quantization is refused). The merged model computes
// what the adapted one does, to float precision, but its weight is no
// longer int8; the int8 initializers go where nothing else reads them.
func Dequantize() Option {
	return func(o *options) error {
		o.dequantize = true
		return nil
	}
}

// checkMergeable refuses to merge into a quantized weight, unless o says
// to dequantize it and it can be.
func checkMergeable(m *graph.Model, l Linear, o options) error {
	if l.Quantized() {
		return checkNBitsMergeable(l, o)
	}
	if !l.Dequantized() {
		return nil
	}
	if !o.dequantize {
		return layerErr(l, "weight %q is %s behind DequantizeLinear %q: W + s·A·B is not on its quantization grid, so a merge cannot be exact in %s; keep the branch, or merge into a dequantized float weight (Dequantize, peftonnx merge --dequantize)",
			l.Weight, l.WeightDType, l.WeightChain[0].Name, l.WeightDType)
	}
	if l.Kind == KindConv {
		return layerErr(l, "weight %q is %s behind DequantizeLinear %q: merging into a dequantized convolution weight is not supported; keep the branch", l.Weight, l.WeightDType, l.WeightChain[0].Name)
	}
	if _, err := dequantize(m, l.WeightChain[0]); err != nil {
		return layerErr(l, "%w", err)
	}
	return nil
}

// dequantize returns the float values of DequantizeLinear dq's output:
// (q − zero_point)·scale, per tensor or along its axis (axis 0 where the
// weight's rank is above 2).
func dequantize(m *graph.Model, dq *onnxpb.NodeProto) ([]float32, error) {
	if graph.IntAttr(dq, "block_size", 0) != 0 {
		return nil, errorf("DequantizeLinear %q quantizes in blocks (block_size %d); only per-tensor and per-axis weights can be dequantized", dq.Name, graph.IntAttr(dq, "block_size", 0))
	}
	q := m.Initializer(dq.Input[0])
	signed := graph.TypeOf(q) == dtype.Int8
	if !signed && graph.TypeOf(q) != dtype.Uint8 {
		return nil, errorf("DequantizeLinear %q: weight %q is %s; int8 and uint8 can be dequantized", dq.Name, q.Name, graph.TypeOf(q))
	}
	qb, err := m.TensorBytes(q)
	if err != nil {
		return nil, errorf("weight %q: %w", q.Name, err)
	}
	scales, err := m.Float32s(m.Initializer(dq.Input[1]))
	if err != nil {
		return nil, errorf("scale %q: %w", dq.Input[1], err)
	}
	zeros := make([]byte, len(scales))
	if len(dq.Input) > 2 && dq.Input[2] != "" {
		zt := m.Initializer(dq.Input[2])
		if zt == nil {
			return nil, errorf("DequantizeLinear %q: zero point %q is not an initializer", dq.Name, dq.Input[2])
		}
		if zeros, err = m.TensorBytes(zt); err != nil {
			return nil, errorf("zero point %q: %w", zt.Name, err)
		}
	}
	// A weight of rank above 2 (a convolution's [out, in, k…]) is read as
	// [out, in·k…]: per tensor, or per axis 0, its output channels.
	rows, cols := int(q.Dims[0]), int(graph.NumElements(q.Dims[1:]))
	axis := graph.IntAttr(dq, "axis", 1)
	if axis < 0 {
		axis += int64(len(q.Dims))
	}
	if len(q.Dims) > 2 && axis != 0 && len(scales) > 1 {
		return nil, errorf("DequantizeLinear %q: weight %v is quantized along axis %d; a weight of rank %d can be dequantized per tensor or along axis 0", dq.Name, q.Dims, axis, len(q.Dims))
	}
	level := func(b byte) float64 {
		if signed {
			return float64(int8(b))
		}
		return float64(b)
	}
	switch {
	case len(scales) == 1 && len(zeros) == 1:
	case axis == 0 && len(scales) == rows && len(zeros) == rows, axis == 1 && len(scales) == cols && len(zeros) == cols:
	default:
		return nil, errorf("DequantizeLinear %q: %d scales and %d zero points do not fit weight %v along axis %d", dq.Name, len(scales), len(zeros), q.Dims, axis)
	}
	out := make([]float32, rows*cols)
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			k := 0
			switch {
			case len(scales) == 1:
			case axis == 0:
				k = i
			default:
				k = j
			}
			out[i*cols+j] = float32((level(qb[i*cols+j]) - level(zeros[k])) * float64(scales[k]))
		}
	}
	return out, nil
}

// dequantized returns f for a float weight: where f's layer reads its
// weight through DequantizeLinear, that node is replaced by a float
// initializer of its output's name and value, and f's layer re-read.
func (f fold) dequantized(m *graph.Model) (fold, error) {
	l := f.l
	if !l.Dequantized() {
		return f, nil
	}
	dq := l.WeightChain[0]
	vals, err := dequantize(m, dq)
	if err != nil {
		return fold{}, layerErr(l, "%w", err)
	}
	q := m.Initializer(dq.Input[0])
	m.RemoveNodes(dq)
	m.AddInitializer(graph.NewFloat32Tensor(dq.Output[0], graph.TypeOf(m.Initializer(dq.Input[1])), q.Dims, vals))
	for _, name := range dq.Input {
		if name != "" && len(m.Consumers(name)) == 0 && m.Input(name) == nil && !m.IsGraphOutput(name) {
			m.RemoveInitializer(name)
		}
	}
	nl, ok := layerOf(m, l.Node)
	if !ok {
		return fold{}, layerErr(l, "after dequantizing, node %q no longer reads a float weight", l.NodeName)
	}
	nl.Module, nl.Kind = l.Module, l.Kind
	f.l = nl
	return f, nil
}
