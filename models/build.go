package models

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Opset is the default-domain opset that every model here imports. At 17,
// ReduceMean still takes its axes as an attribute and LayerNormalization
// exists; Split, Slice, Unsqueeze and Expand take their sizes as inputs.
const Opset = 17

// irVersion is the IR version that goes with Opset.
const irVersion = 8

// defaultInitStd is the standard deviation of the weights when a config
// leaves InitStd at 0: HuggingFace's initializer_range.
const defaultInitStd = 0.02

// normStd is the spread of norm scales around 1 (and of their biases
// around 0), so that tests notice a scale that is not applied.
const normStd = 0.1

// The named dims of the models' inputs and outputs, spelled as Optimum's
// exports spell them.
var (
	batchDim = graph.DimParam("batch_size")
	seqDim   = graph.DimParam("sequence_length")
	pastDim  = graph.DimParam("past_sequence_length")
	totalDim = graph.DimParam("total_sequence_length")
)

// sized returns the dim of fixed size n.
func sized(n int) graph.Dim { return graph.DimValue(int64(n)) }

// builder assembles a model the way a PyTorch exporter lays it out: nodes
// named /scope/OpType (OpType_1, … when repeated), outputs named
// <node>_output_<i>, constants as Constant nodes (so that they are not
// mistaken for parameters), weights as initializers named like the
// state dict.
type builder struct {
	m      *graph.Model
	elem   dtype.Type // element type of weights and activations
	seed   uint64
	std    float64
	anon   bool // name nodes OpType_N, as old exporters did
	nanon  int
	consts map[string]string
	shapes map[string]string
}

func newBuilder(graphName string, elem dtype.Type, seed uint64, std float64) *builder {
	p := &onnxpb.ModelProto{
		IrVersion:    irVersion,
		ProducerName: "peftonnx/models",
		Graph:        &onnxpb.GraphProto{Name: graphName},
	}
	m := graph.New(p, "")
	m.SetOpset("", Opset)
	if std == 0 {
		std = defaultInitStd
	}
	return &builder{m: m, elem: elem, seed: seed, std: std, consts: map[string]string{}, shapes: map[string]string{}}
}

// add appends a node of type opType in scope. Its outputs are outs, or,
// where outs is nil, nout fresh names. It returns the outputs.
func (b *builder) add(scope, opType string, outs []string, nout int, inputs []string, attrs ...*onnxpb.AttributeProto) []string {
	var name string
	if b.anon {
		name = b.m.UniqueName(opType + "_" + strconv.Itoa(b.nanon))
		b.nanon++
	} else {
		name = b.m.UniqueName(scope + "/" + opType)
	}
	if outs == nil {
		for i := range nout {
			outs = append(outs, name+"_output_"+strconv.Itoa(i))
		}
	}
	b.m.AddNode(&onnxpb.NodeProto{OpType: opType, Name: name, Input: inputs, Output: outs, Attribute: attrs})
	return outs
}

// op adds a node with one fresh output and returns that output.
func (b *builder) op(scope, opType string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return b.add(scope, opType, nil, 1, inputs, attrs...)[0]
}

// opTo adds a node whose one output is called out ("" for a fresh name).
func (b *builder) opTo(out, scope, opType string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	if out == "" {
		return b.op(scope, opType, inputs, attrs...)
	}
	return b.add(scope, opType, []string{out}, 1, inputs, attrs...)[0]
}

// constant returns the output of a Constant node holding t, adding the node
// the first time a value is asked for.
func (b *builder) constant(t *onnxpb.TensorProto) string {
	key := fmt.Sprint(t.DataType, t.Dims) + hex.EncodeToString(t.RawData)
	if out, ok := b.consts[key]; ok {
		return out
	}
	out := b.op("", "Constant", nil, graph.AttrTensor("value", t))
	b.consts[key] = out
	return out
}

// ints returns a 1-D int64 constant.
func (b *builder) ints(v ...int64) string {
	return b.constant(graph.NewInt64Tensor("", []int64{int64(len(v))}, v))
}

// int0 returns a scalar int64 constant.
func (b *builder) int0(v int64) string {
	return b.constant(graph.NewInt64Tensor("", nil, []int64{v}))
}

// scalar returns a scalar float constant of type dt.
func (b *builder) scalar(dt dtype.Type, v float64) string {
	return b.constant(graph.NewFloat32Tensor("", dt, nil, []float32{float32(v)}))
}

// floats returns a 1-D float constant of type dt.
func (b *builder) floats(dt dtype.Type, v []float32) string {
	return b.constant(graph.NewFloat32Tensor("", dt, []int64{int64(len(v))}, v))
}

// normal adds an initializer called name whose values are mean + std·N(0,1)
// from the tensor's own stream.
func (b *builder) normal(name string, dims []int64, mean, std float64) string {
	n := int(graph.NumElements(dims))
	raw := normalBytes(n, b.elem, streamSeed(b.seed, name), mean, std)
	b.m.AddInitializer(&onnxpb.TensorProto{Name: name, DataType: int32(b.elem), Dims: dims, RawData: raw})
	return name
}

// weight adds a linear or embedding weight drawn from N(0, std²).
func (b *builder) weight(name string, dims ...int64) string {
	return b.normal(name, dims, 0, b.std)
}

// linear adds y = x·W (+ bias) as MatMul (+ Add), the way exporters lay out
// an nn.Linear on a 3-D input: nodes <scope>/MatMul and <scope>/Add, weights
// <module>.weight [in, out] and <module>.bias [out]. The last node's output
// is called out, or gets a fresh name where out is "".
func (b *builder) linear(scope, module, x string, in, outDim int, bias bool, out string) string {
	w := b.weight(module+".weight", int64(in), int64(outDim))
	if !bias {
		return b.opTo(out, scope, "MatMul", []string{x, w})
	}
	y := b.op(scope, "MatMul", []string{x, w})
	bb := b.weight(module+".bias", int64(outDim))
	return b.opTo(out, scope, "Add", []string{y, bb})
}

// gemm adds y = x·Wᵀ + bias on a [batch, seq, in] input as
// Reshape → Gemm(transB=1) → Reshape, the layout of torch's exports of
// addmm: nodes <scope>/Gemm, weight <module>.weight [out, in].
// lead is a [2] int64 value holding batch and sequence length.
func (b *builder) gemm(scope, module, x, lead string, in, outDim int, out string) string {
	w := b.weight(module+".weight", int64(outDim), int64(in))
	bias := b.weight(module+".bias", int64(outDim))
	x2 := b.op(scope, "Reshape", []string{x, b.ints(-1, int64(in))})
	y := b.op(scope, "Gemm", []string{x2, w, bias}, graph.AttrInt("transB", 1))
	key := lead + "|" + strconv.Itoa(outDim)
	shape, ok := b.shapes[key]
	if !ok {
		shape = b.op("", "Concat", []string{lead, b.ints(int64(outDim))}, graph.AttrInt("axis", 0))
		b.shapes[key] = shape
	}
	return b.opTo(out, scope, "Reshape", []string{y, shape})
}

// castTo casts x from type from to type to; it adds nothing when they are
// the same.
func (b *builder) castTo(scope, x string, from, to dtype.Type) string {
	if from == to {
		return x
	}
	return b.op(scope, "Cast", []string{x}, graph.AttrInt("to", int64(to)))
}

// rmsNorm adds LLaMA's RMSNorm, w · x / sqrt(mean(x²) + eps), computed in
// float32 as HuggingFace does: Pow, ReduceMean, Add, Sqrt, Div, Mul.
func (b *builder) rmsNorm(scope, module, x string, width int, eps float64) string {
	w := b.normal(module+".weight", []int64{int64(width)}, 1, normStd)
	x32 := b.castTo(scope, x, b.elem, dtype.Float32)
	sq := b.op(scope, "Pow", []string{x32, b.scalar(dtype.Float32, 2)})
	mean := b.op(scope, "ReduceMean", []string{sq}, graph.AttrInts("axes", -1), graph.AttrInt("keepdims", 1))
	v := b.op(scope, "Add", []string{mean, b.scalar(dtype.Float32, eps)})
	s := b.op(scope, "Sqrt", []string{v})
	n := b.op(scope, "Div", []string{x32, s})
	n = b.castTo(scope, n, dtype.Float32, b.elem)
	return b.op(scope, "Mul", []string{w, n})
}

// layerNorm adds LayerNorm over the last axis with weight and bias
// <module>.weight and <module>.bias: one LayerNormalization node, or, when
// decomposed, ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add.
func (b *builder) layerNorm(scope, module, x string, width int, eps float64, decomposed bool) string {
	w := b.normal(module+".weight", []int64{int64(width)}, 1, normStd)
	bias := b.normal(module+".bias", []int64{int64(width)}, 0, normStd)
	if !decomposed {
		return b.op(scope, "LayerNormalization", []string{x, w, bias},
			graph.AttrInt("axis", -1), graph.AttrFloat("epsilon", float32(eps)))
	}
	axes := []*onnxpb.AttributeProto{graph.AttrInts("axes", -1), graph.AttrInt("keepdims", 1)}
	mean := b.op(scope, "ReduceMean", []string{x}, axes...)
	d := b.op(scope, "Sub", []string{x, mean})
	sq := b.op(scope, "Pow", []string{d, b.scalar(b.elem, 2)})
	v := b.op(scope, "ReduceMean", []string{sq}, axes...)
	v = b.op(scope, "Add", []string{v, b.scalar(b.elem, eps)})
	s := b.op(scope, "Sqrt", []string{v})
	n := b.op(scope, "Div", []string{d, s})
	n = b.op(scope, "Mul", []string{n, w})
	return b.op(scope, "Add", []string{n, bias})
}

// geluTanh adds GPT-2's gelu_new:
// 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).
func (b *builder) geluTanh(scope, x string) string {
	c := func(v float64) string { return b.scalar(b.elem, v) }
	x3 := b.op(scope, "Pow", []string{x, c(3)})
	t := b.op(scope, "Mul", []string{x3, c(0.044715)})
	t = b.op(scope, "Add", []string{x, t})
	t = b.op(scope, "Mul", []string{t, c(math.Sqrt(2 / math.Pi))})
	t = b.op(scope, "Tanh", []string{t})
	t = b.op(scope, "Add", []string{t, c(1)})
	h := b.op(scope, "Mul", []string{x, c(0.5)})
	return b.op(scope, "Mul", []string{h, t})
}

// geluErf adds BERT's exact GELU: x·0.5·(1 + erf(x/√2)).
func (b *builder) geluErf(scope, x string) string {
	c := func(v float64) string { return b.scalar(b.elem, v) }
	t := b.op(scope, "Div", []string{x, c(math.Sqrt2)})
	t = b.op(scope, "Erf", []string{t})
	t = b.op(scope, "Add", []string{t, c(1)})
	t = b.op(scope, "Mul", []string{x, t})
	return b.op(scope, "Mul", []string{t, c(0.5)})
}

// splitHeads turns [batch, seq, heads·dim] into [batch, heads, seq, dim].
func (b *builder) splitHeads(scope, x string, heads, dim int) string {
	r := b.op(scope, "Reshape", []string{x, b.ints(0, 0, int64(heads), int64(dim))})
	return b.op(scope, "Transpose", []string{r}, graph.AttrInts("perm", 0, 2, 1, 3))
}

// mergeHeads turns [batch, heads, seq, dim] into [batch, seq, heads·dim].
func (b *builder) mergeHeads(scope, x string, width int) string {
	t := b.op(scope, "Transpose", []string{x}, graph.AttrInts("perm", 0, 2, 1, 3))
	return b.op(scope, "Reshape", []string{t, b.ints(0, 0, int64(width))})
}

// repeatKV turns [batch, kvHeads, seq, dim] into [batch, kvHeads·rep, seq,
// dim], each KV head repeated rep times in place (HF's repeat_kv):
// Unsqueeze, Expand, Reshape.
func (b *builder) repeatKV(scope, x string, kvHeads, rep, dim int) string {
	if rep == 1 {
		return x
	}
	u := b.op(scope, "Unsqueeze", []string{x, b.ints(2)})
	e := b.op(scope, "Expand", []string{u, b.ints(1, 1, int64(rep), 1, 1)})
	return b.op(scope, "Reshape", []string{e, b.ints(0, int64(kvHeads*rep), -1, int64(dim))})
}

// attention adds softmax(q·kᵀ/√dim + mask)·v for q [batch, heads, seq, dim]
// and k, v [batch, heads, total, dim]; mask broadcasts to
// [batch, heads, seq, total]. The scaling is a Div by √dim where divide is
// set (GPT-2, BERT) and a Mul by 1/√dim otherwise (LLaMA). A float16 model
// takes its softmax in float32, as HuggingFace does.
func (b *builder) attention(scope, q, k, v, mask string, dim int, divide bool) string {
	kt := b.op(scope, "Transpose", []string{k}, graph.AttrInts("perm", 0, 1, 3, 2))
	s := b.op(scope, "MatMul", []string{q, kt})
	if divide {
		s = b.op(scope, "Div", []string{s, b.scalar(b.elem, math.Sqrt(float64(dim)))})
	} else {
		s = b.op(scope, "Mul", []string{s, b.scalar(b.elem, 1/math.Sqrt(float64(dim)))})
	}
	s = b.op(scope, "Add", []string{s, mask})
	s = b.castTo(scope, s, b.elem, dtype.Float32)
	p := b.op(scope, "Softmax", []string{s}, graph.AttrInt("axis", -1))
	p = b.castTo(scope, p, dtype.Float32, b.elem)
	return b.op(scope, "MatMul", []string{p, v})
}

// lowest returns the most negative finite value of dt, the additive
// mask of a position that may not be attended (torch.finfo(dtype).min).
func lowest(dt dtype.Type) float64 {
	if dt == dtype.Float16 {
		return -65504
	}
	return -math.MaxFloat32
}

// causalMask adds the additive attention mask of a decoder,
// [batch, 1, seq, total]: 0 where query i may see key j (j ≤ past+i and
// attention_mask[b, j] = 1), lowest(dtype) elsewhere. ids is input_ids
// [batch, seq] and amask attention_mask [batch, total]; past = total − seq.
// It also returns the absolute positions past … total−1 of the queries,
// [seq] int64.
func (b *builder) causalMask(scope, ids, amask string) (mask, qpos string) {
	s := b.op(scope, "Gather", []string{b.op(scope, "Shape", []string{ids}), b.int0(1)}, graph.AttrInt("axis", 0))
	t := b.op(scope, "Gather", []string{b.op(scope, "Shape", []string{amask}), b.int0(1)}, graph.AttrInt("axis", 0))
	past := b.op(scope, "Sub", []string{t, s})
	qpos = b.op(scope, "Range", []string{past, t, b.int0(1)})
	kpos := b.op(scope, "Range", []string{b.int0(0), t, b.int0(1)})
	col := b.op(scope, "Unsqueeze", []string{qpos, b.ints(1)})
	causal := b.op(scope, "LessOrEqual", []string{kpos, col}) // [seq, total]
	pad := b.op(scope, "Cast", []string{amask}, graph.AttrInt("to", int64(dtype.Bool)))
	pad = b.op(scope, "Unsqueeze", []string{pad, b.ints(1, 2)}) // [batch, 1, 1, total]
	ok := b.op(scope, "And", []string{causal, pad})
	mask = b.op(scope, "Where", []string{ok, b.scalar(b.elem, 0), b.scalar(b.elem, lowest(b.elem))})
	return mask, qpos
}

// finish checks the model and returns it.
func (b *builder) finish(family string) (*graph.Model, error) {
	if err := b.m.Validate(); err != nil {
		return nil, errorf("%s: built an invalid graph: %v", family, err)
	}
	return b.m, nil
}
