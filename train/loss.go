package train

import (
	"math"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// LabelsInput is the graph input that the losses add for their targets,
// named as HF models name the argument.
const LabelsInput = "labels"

// minLossOpset is the oldest default-domain opset the losses support:
// GatherElements arrived in opset 11.
const minLossOpset = 11

// CausalLMLoss appends HF's causal language-model loss to m and returns
// the name of the new scalar float32 output that holds it.
//
// logits names a [batch, seq, vocab] value of m, of any floating type. The
// loss adds an int64 graph input "labels" of shape [batch, seq], aligned
// with input_ids: the shift happens inside, so position t's logits are
// scored against label t+1. It is the mean cross entropy over every label
// in the batch that is not -100 (IgnoreIndex): the sum of -log p over
// those labels divided by their count. The logits are cast to float32
// first unless they are, as HF upcasts fp16 logits. A batch with no labels
// at all gives 0 rather than HF's NaN (0/0).
//
// The shift moves the labels, not the logits: labels[:, 1:] padded with
// -100 score every position, so the logits, the largest tensor of a
// language model, are never copied, forward or backward.
//
// The nodes are standard ops of m's default opset (11 or later), in the
// forms that opset wants, and differentiable by package autodiff: Slice,
// Pad, Cast, LogSoftmax, Unsqueeze, Equal, Not, Where, GatherElements,
// ReduceSum, Max, Div and Neg.
//
// WithLossChunks(n) computes an LM head and the loss in n chunks over the
// sequence instead (chunkedloss.go): no [batch, seq, vocab] tensor is
// whole, forward or backward, and the numbers are those of the whole loss
// up to float reassociation.
func CausalLMLoss(m *graph.Model, logits string, opts ...LossOption) (string, error) {
	var o lossOptions
	for _, f := range opts {
		f(&o)
	}
	return tokenCrossEntropy(m, "causal_lm_loss", logits, true, o.chunks)
}

// LossOption configures CausalLMLoss.
type LossOption func(*lossOptions)

type lossOptions struct{ chunks int }

// WithLossChunks has CausalLMLoss compute the LM head and the loss over n
// chunks of the sequence, where logits is the product of a float32 hidden
// state [batch, seq, hidden] by a 2-D float32 weight or by an int4
// (MatMulNBits) one (an LM head), plus LoRA branches on it (plain LoRA on
// lm_head, dropout or not; DoRA there is not); for other logits, or n
// below 2, the loss is the whole one. Each chunk
// computes its share of the loss's gradient with respect to the hidden
// state in the forward pass, so the graph is meant for training (package
// autodiff): a forward pass alone does the gradient's work too.
func WithLossChunks(n int) LossOption { return func(o *lossOptions) { o.chunks = n } }

// TokenClassificationLoss appends the loss of HF's *ForMaskedLM and
// *ForTokenClassification models to m and returns the name of the scalar
// float32 output: logits names a [batch, seq, classes] value (classes is
// the vocabulary for a masked LM), and the loss adds an int64 input
// "labels" [batch, seq]. Position t is scored against label t, without
// the causal LM's shift: the mean cross entropy over the labels that are
// not -100, computed in float32.
func TokenClassificationLoss(m *graph.Model, logits string) (string, error) {
	return tokenCrossEntropy(m, "token_loss", logits, false, 0)
}

// tokenCrossEntropy appends, in scope, the mean cross entropy of logits
// [batch, seq, classes] against an int64 input "labels" [batch, seq]; with
// shift, position t is scored against label t+1. With chunks > 1 it
// computes an LM head and the loss chunk by chunk where it can.
func tokenCrossEntropy(m *graph.Model, scope, logits string, shift bool, chunks int) (string, error) {
	b, err := newLossGraph(m, scope, logits, 3)
	if err != nil {
		return "", err
	}
	batch, seq := b.dimOr(0, graph.DimParam("batch")), b.dimOr(1, graph.DimParam("sequence"))
	labels, err := b.labelsInput(dtype.Int64, batch, seq)
	if err != nil {
		return "", err
	}
	if shift {
		// The labels move left by one and the last position gets
		// IgnoreIndex, which is HF's logits[:, :-1] against labels[:, 1:]
		// without copying the logits, the largest tensor of the graph,
		// forward or backward.
		labels = b.pad(b.slice(labels, 1, math.MaxInt64, 1), 1, IgnoreIndex)
	}
	if chunks > 1 {
		loss, ok, err := chunkedCausalLM(b, logits, labels, chunks)
		if err != nil || ok {
			return loss, err
		}
	}
	return b.crossEntropy(logits, labels, 2), nil
}

// SequenceClassificationLoss appends the single-label classification loss
// of HF's *ForSequenceClassification models to m and returns the name of
// the scalar float32 output. logits names a [batch, classes] value; the
// loss adds an int64 input "labels" of shape [batch]. It is the mean cross
// entropy over the labels that are not -100, computed in float32.
func SequenceClassificationLoss(m *graph.Model, logits string) (string, error) {
	b, err := newLossGraph(m, "classification_loss", logits, 2)
	if err != nil {
		return "", err
	}
	labels, err := b.labelsInput(dtype.Int64, b.dimOr(0, graph.DimParam("batch")))
	if err != nil {
		return "", err
	}
	return b.crossEntropy(logits, labels, 1), nil
}

// MSELoss appends the mean squared error between a value of m and a
// float32 input "labels" of the same shape, and returns the name of the
// scalar float32 output: mean((output − labels)²) over all elements, in
// float32. This is HF's regression loss (num_labels = 1) with the target
// shaped like the output.
func MSELoss(m *graph.Model, output string) (string, error) {
	b, err := newLossGraph(m, "mse_loss", output, -1)
	if err != nil {
		return "", err
	}
	if b.rank < 0 {
		return "", errorf("%s: %q has no declared shape: declare it in the model's outputs or value_info", b.name, output)
	}
	dims := make([]graph.Dim, b.rank)
	for i := range dims {
		dims[i] = b.dimOr(i, graph.Dim{})
	}
	target, err := b.labelsInput(dtype.Float32, dims...)
	if err != nil {
		return "", err
	}
	d := b.g.Op("Sub", []string{b.g.Op("Cast", []string{output}, graph.AttrInt("to", int64(dtype.Float32))), target})
	sq := b.g.Op("Mul", []string{d, d})
	return b.finish("ReduceMean", []string{sq}, graph.AttrInt("keepdims", 0)), nil
}

// lossGraph appends loss nodes to a model, in the forms its opset wants,
// through a graph.Builder: nodes and their outputs named /<name>/Op…, the
// helper initializers /<name>/starts, /<name>/pads, ….
type lossGraph struct {
	g     *graph.Builder
	name  string // the loss's name: its scope, and the prefix of its errors
	opset int64
	// dims and rank describe the scored value's shape, from the model's
	// declarations; rank is -1 when unknown.
	dims []graph.Dim
	rank int
}

// newLossGraph checks m and the scored value, whose rank must be
// wantRank unless that is -1 or the rank is not declared.
func newLossGraph(m *graph.Model, name, value string, wantRank int) (*lossGraph, error) {
	opset := m.Opset("")
	if opset < minLossOpset {
		return nil, errorf("%s: needs default-domain opset %d or later, the model imports %d", name, minLossOpset, opset)
	}
	g := graph.NewBuilder(m, graph.BuilderOptions{Scope: "/" + name, Outputs: graph.OutputsAfterOp})
	b := &lossGraph{g: g, name: name, opset: opset, rank: -1}
	vi, defined := findValue(m, value)
	if !defined {
		return nil, errorf("%s: the model has no value %q", name, value)
	}
	if vi != nil {
		et, dims, shaped := graph.ValueDims(vi)
		if et != dtype.Undefined && !et.IsFloat() {
			return nil, errorf("%s: %q is %s, not a floating-point tensor", name, value, et)
		}
		if shaped {
			b.dims, b.rank = dims, len(dims)
		}
	}
	if wantRank >= 0 && b.rank >= 0 && b.rank != wantRank {
		return nil, errorf("%s: %q has rank %d, want %d", name, value, b.rank, wantRank)
	}
	return b, nil
}

// findValue returns the declaration of a value of m, if any, and whether
// anything defines the value at all.
func findValue(m *graph.Model, name string) (*onnxpb.ValueInfoProto, bool) {
	g := m.Graph()
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Output, g.ValueInfo, g.Input} {
		for _, v := range list {
			if v.Name == name {
				return v, true
			}
		}
	}
	if t := m.Initializer(name); t != nil {
		return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: t.DataType}}}}, true
	}
	return nil, m.Producer(name) != nil
}

// dimOr returns dimension i of the scored value: its size, its symbolic
// name, or def when it has neither.
func (b *lossGraph) dimOr(i int, def graph.Dim) graph.Dim {
	if i >= len(b.dims) {
		return def
	}
	if _, fixed := b.dims[i].Value(); fixed || b.dims[i].Param() != "" {
		return b.dims[i]
	}
	return def
}

// labelsInput adds the "labels" graph input, or reuses one of the right
// element type that the model already has.
func (b *lossGraph) labelsInput(elemType dtype.Type, dims ...graph.Dim) (string, error) {
	m := b.g.Model()
	if in := m.Input(LabelsInput); in != nil {
		if et, _, _ := graph.ValueShape(in); et != elemType {
			return "", errorf("%s: the model has an input %q of type %s, want %s", b.name, LabelsInput, et, elemType)
		}
		return LabelsInput, nil
	}
	if m.HasName(LabelsInput) {
		return "", errorf("%s: the model already has a value named %q", b.name, LabelsInput)
	}
	m.AddInput(graph.SymbolicTensorInfo(LabelsInput, elemType, dims))
	return LabelsInput, nil
}

// ints adds a 1-D int64 initializer called /<loss>/name.
func (b *lossGraph) ints(name string, v ...int64) string {
	return b.g.Initializer(b.g.Scope()+"/"+name, graph.NewInt64Tensor("", []int64{int64(len(v))}, v))
}

// int0 adds a rank-0 int64 initializer called /<loss>/name.
func (b *lossGraph) int0(name string, v int64) string {
	return b.g.Initializer(b.g.Scope()+"/"+name, graph.NewInt64Tensor("", nil, []int64{v}))
}

// float0 adds a rank-0 float32 initializer called /<loss>/name.
func (b *lossGraph) float0(name string, v float32) string {
	return b.g.Initializer(b.g.Scope()+"/"+name, graph.NewFloat32Tensor("", dtype.Float32, nil, []float32{v}))
}

// slice takes [start, end) along axis.
func (b *lossGraph) slice(x string, start, end, axis int64) string {
	return b.g.Op("Slice", []string{x, b.ints("starts", start), b.ints("ends", end), b.ints("axes", axis)})
}

// pad appends one element of value v at the end of axis 1 of a rank-2
// int64 tensor: an attribute before opset 11, inputs since (and the loss
// needs 11).
func (b *lossGraph) pad(x string, axis int64, v int64) string {
	pads := make([]int64, 4)
	pads[2+axis] = 1
	return b.g.Op("Pad", []string{x, b.ints("pads", pads...), b.int0("pad_value", v)})
}

// unsqueeze inserts a dimension at axis: an attribute before opset 13, an
// input since.
func (b *lossGraph) unsqueeze(x string, axis int64) string {
	if b.opset < 13 {
		return b.g.Op("Unsqueeze", []string{x}, graph.AttrInts("axes", axis))
	}
	return b.g.Op("Unsqueeze", []string{x, b.ints("axes", axis)})
}

// sumAll reduces every axis to a scalar. ReduceSum without axes does so in
// every opset, whether axes is an attribute (before 13) or an input.
func (b *lossGraph) sumAll(x string) string {
	return b.g.Op("ReduceSum", []string{x}, graph.AttrInt("keepdims", 0))
}

// crossEntropy returns the mean of −log softmax(logits)[label] along
// classAxis (the last axis) over the labels that are not IgnoreIndex.
// labels has logits' shape without the class axis.
//
// From opset 12 it is one SoftmaxCrossEntropyLoss over the logits seen as
// [rows, classes] (a Flatten, which ONNX Runtime does without a copy),
// summed and divided by the number of labels scored: the gradient then
// needs no one-hot or full-size difference tensors (autodiff's fused
// cross-entropy gradient), which for a language model's vocabulary-wide
// logits are hundreds of megabytes each. Before 12 it is LogSoftmax,
// GatherElements and a masked sum.
func (b *lossGraph) crossEntropy(logits, labels string, classAxis int64) string {
	x := logits
	if !b.isFloat32(logits) {
		x = b.g.Op("Cast", []string{logits}, graph.AttrInt("to", int64(dtype.Float32)))
	}
	valid := b.g.Op("Not", []string{b.g.Op("Equal", []string{labels, b.int0("ignore_index", IgnoreIndex)})})
	count := b.sumAll(b.g.Op("Cast", []string{valid}, graph.AttrInt("to", int64(dtype.Float32))))
	count = b.g.Op("Max", []string{count, b.float0("one", 1)})
	if b.opset >= 12 {
		scores, y := x, labels
		if classAxis != 1 {
			scores = b.g.Op("Flatten", []string{x}, graph.AttrInt("axis", classAxis))
			y = b.g.Op("Reshape", []string{labels, b.ints("rows", -1)})
		}
		total := b.g.Op("SoftmaxCrossEntropyLoss", []string{scores, y},
			graph.AttrString("reduction", "sum"), graph.AttrInt("ignore_index", IgnoreIndex))
		return b.finish("Div", []string{total, count})
	}
	// axis -1 is the last axis in every opset: before 13 LogSoftmax
	// flattens to 2-D around the axis, which for the last axis is the same.
	logp := b.g.Op("LogSoftmax", []string{x}, graph.AttrInt("axis", -1))
	y := b.unsqueeze(labels, classAxis)
	safe := b.g.Op("Where", []string{b.unsqueeze(valid, classAxis), y, b.int0("zero_label", 0)})
	picked := b.g.Op("GatherElements", []string{logp, safe}, graph.AttrInt("axis", classAxis))
	kept := b.g.Op("Where", []string{b.unsqueeze(valid, classAxis), picked, b.float0("zero", 0)})
	return b.finish("Neg", []string{b.g.Op("Div", []string{b.sumAll(kept), count})})
}

// isFloat32 reports whether a value of the model is declared float32.
func (b *lossGraph) isFloat32(v string) bool {
	vi, _ := findValue(b.g.Model(), v)
	return vi != nil && dtype.Type(vi.GetType().GetTensorType().GetElemType()) == dtype.Float32
}

// finish adds the last node, whose output is the loss under a fresh name
// "loss" (or "loss_1", …), declares that output as a scalar float32 graph
// output and returns its name.
func (b *lossGraph) finish(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	m := b.g.Model()
	name := m.UniqueName("loss")
	b.g.NodeTo("", op, inputs, []string{name}, attrs...)
	m.AddOutput(graph.TensorInfo(name, dtype.Float32, nil))
	return name
}
