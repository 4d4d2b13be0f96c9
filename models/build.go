package models

import (
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

// headDim is the width of one of heads attention heads over hidden
// features, hidden/heads, and 0 without heads.
func headDim(hidden, heads int) int {
	if heads == 0 {
		return 0
	}
	return hidden / heads
}

// sized returns the dim of fixed size n.
func sized(n int) graph.Dim { return graph.DimValue(int64(n)) }

// cacheInfos declares a decoder's key/value cache, name.{i}.key and
// name.{i}.value for each of layers: [batch, heads, length, dim] of type
// dt.
func cacheInfos(name string, layers int, dt dtype.Type, heads int, length graph.Dim, dim int) []*onnxpb.ValueInfoProto {
	var infos []*onnxpb.ValueInfoProto
	for i := range layers {
		for _, kind := range []string{"key", "value"} {
			infos = append(infos, graph.SymbolicTensorInfo(fmt.Sprintf("%s.%d.%s", name, i, kind), dt, []graph.Dim{batchDim, sized(heads), length, sized(dim)}))
		}
	}
	return infos
}

// decoderLayout is the interface of a decoder in Optimum's layout, for
// layers layers with heads key/value heads of width dim, in dt.
type decoderLayout struct {
	dt                        dtype.Type
	layers, heads, dim, vocab int
	cache                     bool // with past_key_values in and present out
}

// addInputs declares input_ids [batch, seq] and attention_mask [batch,
// past+seq] int64, position_ids [batch, seq] int64 where positions is set,
// and with the cache past_key_values.{i}.key and .value [batch, heads,
// past, dim].
func (l decoderLayout) addInputs(m *graph.Model, positions bool) {
	m.AddInput(graph.SymbolicTensorInfo("input_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	m.AddInput(graph.SymbolicTensorInfo("attention_mask", dtype.Int64, []graph.Dim{batchDim, totalDim}))
	if positions {
		m.AddInput(graph.SymbolicTensorInfo("position_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	}
	if l.cache {
		for _, v := range cacheInfos("past_key_values", l.layers, l.dt, l.heads, pastDim, l.dim) {
			m.AddInput(v)
		}
	}
}

// addOutputs declares logits [batch, seq, vocab] and with the cache
// present.{i}.key and .value [batch, heads, past+seq, dim].
func (l decoderLayout) addOutputs(m *graph.Model) {
	m.AddOutput(graph.SymbolicTensorInfo("logits", l.dt, []graph.Dim{batchDim, seqDim, sized(l.vocab)}))
	if l.cache {
		for _, v := range cacheInfos("present", l.layers, l.dt, l.heads, totalDim, l.dim) {
			m.AddOutput(v)
		}
	}
}

// exporter lays a model out the way PyTorch's exporter does: nodes named
// /scope/OpType (OpType_1, … when repeated), outputs named
// <node>_output_<i>, constants as Constant nodes (so that they are not
// mistaken for parameters), weights as initializers named like the
// state dict. It builds through a graph.Builder; the layers below take the
// builder of their scope.
type exporter struct {
	*graph.Builder            // the root scope, "": constants and shared shapes
	elem           dtype.Type // element type of weights and activations
	seed           uint64
	std            float64
	shapes         map[string]string // gemm's output shapes, by lead and width
}

// newExporter starts a model. With anon, nodes are named OpType_N, N
// counting every node, as old exporters named them.
func newExporter(graphName string, elem dtype.Type, seed uint64, std float64, anon bool) *exporter {
	opts := graph.BuilderOptions{Outputs: graph.OutputsAfterNode, ConstantNodes: true}
	if anon {
		count := 0
		opts.NodeName = func(_, op string) string {
			name := op + "_" + strconv.Itoa(count)
			count++
			return name
		}
	}
	return newExporterWith(graphName, elem, seed, std, opts)
}

// newExporterWith starts a model whose builder names things as opts say.
func newExporterWith(graphName string, elem dtype.Type, seed uint64, std float64, opts graph.BuilderOptions) *exporter {
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
	return &exporter{Builder: graph.NewBuilder(m, opts), elem: elem, seed: seed, std: std, shapes: map[string]string{}}
}

// normalAs adds an initializer called name that holds the values a weight
// called drawn would get: mean + std·N(0,1) from drawn's stream. Layouts
// that rename a weight keep its values so.
func (ex *exporter) normalAs(name, drawn string, dims []int64, mean, std float64) string {
	n := int(graph.NumElements(dims))
	raw := normalBytes(n, ex.elem, streamSeed(ex.seed, drawn), mean, std)
	ex.Model().AddInitializer(&onnxpb.TensorProto{Name: name, DataType: int32(ex.elem), Dims: dims, RawData: raw})
	return name
}

// weightAs adds a linear or embedding weight called name with the values
// of the weight called drawn.
func (ex *exporter) weightAs(name, drawn string, dims ...int64) string {
	return ex.normalAs(name, drawn, dims, 0, ex.std)
}

// packedWeight adds an initializer called name, [rows, Σ widths], whose
// columns are those of the weights drawn[i], [rows, widths[i]], side by
// side: a fused projection holding the values of its parts. With biases
// (rows 0), the parts are 1-D and are joined end to end.
func (ex *exporter) packedWeight(name string, drawn []string, rows int, widths []int, mean, std float64) string {
	size := ex.elem.Size()
	total := 0
	for _, w := range widths {
		total += w
	}
	r := max(rows, 1)
	raw := make([]byte, r*total*size)
	col := 0
	for i, d := range drawn {
		part := normalBytes(r*widths[i], ex.elem, streamSeed(ex.seed, d), mean, std)
		for row := range r {
			copy(raw[(row*total+col)*size:], part[row*widths[i]*size:(row+1)*widths[i]*size])
		}
		col += widths[i]
	}
	dims := []int64{int64(rows), int64(total)}
	if rows == 0 {
		dims = []int64{int64(total)}
	}
	ex.Model().AddInitializer(&onnxpb.TensorProto{Name: name, DataType: int32(ex.elem), Dims: dims, RawData: raw})
	return name
}

// opTo adds a node of op type op in scope s whose one output is called
// out, or gets a fresh name where out is "", and returns the output.
func opTo(s *graph.Builder, out, op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	if out == "" {
		return s.Op(op, inputs, attrs...)
	}
	return s.NodeTo("", op, inputs, []string{out}, attrs...).Output[0]
}

// normal adds an initializer called name whose values are mean + std·N(0,1)
// from the tensor's own stream.
func (ex *exporter) normal(name string, dims []int64, mean, std float64) string {
	n := int(graph.NumElements(dims))
	raw := normalBytes(n, ex.elem, streamSeed(ex.seed, name), mean, std)
	ex.Model().AddInitializer(&onnxpb.TensorProto{Name: name, DataType: int32(ex.elem), Dims: dims, RawData: raw})
	return name
}

// weight adds a linear or embedding weight drawn from N(0, std²).
func (ex *exporter) weight(name string, dims ...int64) string {
	return ex.normal(name, dims, 0, ex.std)
}

// linear adds y = x·W (+ bias) as MatMul (+ Add) in scope s, the way
// exporters lay out an nn.Linear on a 3-D input: weights <module>.weight
// [in, out] and <module>.bias [out]. The last node's output is called out,
// or gets a fresh name where out is "".
func (ex *exporter) linear(s *graph.Builder, module, x string, in, outDim int, bias bool, out string) string {
	w := ex.weight(module+".weight", int64(in), int64(outDim))
	if !bias {
		return opTo(s, out, "MatMul", []string{x, w})
	}
	y := s.Op("MatMul", []string{x, w})
	bb := ex.weight(module+".bias", int64(outDim))
	return opTo(s, out, "Add", []string{y, bb})
}

// gemm adds y = x·Wᵀ + bias on a [batch, seq, in] input as
// Reshape → Gemm(transB=1) → Reshape in scope s, the layout of torch's
// exports of addmm: weight <module>.weight [out, in]. lead is a [2] int64
// value holding batch and sequence length.
func (ex *exporter) gemm(s *graph.Builder, module, x, lead string, in, outDim int, out string) string {
	w := ex.weight(module+".weight", int64(outDim), int64(in))
	bias := ex.weight(module+".bias", int64(outDim))
	x2 := s.Op("Reshape", []string{x, ex.Int64s(-1, int64(in))})
	y := s.Op("Gemm", []string{x2, w, bias}, graph.AttrInt("transB", 1))
	key := lead + "|" + strconv.Itoa(outDim)
	shape, ok := ex.shapes[key]
	if !ok {
		shape = ex.Op("Concat", []string{lead, ex.Int64s(int64(outDim))}, graph.AttrInt("axis", 0))
		ex.shapes[key] = shape
	}
	return opTo(s, out, "Reshape", []string{y, shape})
}

// castTo casts x from type from to type to in scope s; it adds nothing
// when they are the same.
func castTo(s *graph.Builder, x string, from, to dtype.Type) string {
	if from == to {
		return x
	}
	return s.Op("Cast", []string{x}, graph.AttrInt("to", int64(to)))
}

// rmsNorm adds LLaMA's RMSNorm, w · x / sqrt(mean(x²) + eps), computed in
// float32 as HuggingFace does: Pow, ReduceMean, Add, Sqrt, Div, Mul.
func (ex *exporter) rmsNorm(s *graph.Builder, module, x string, width int, eps float64) string {
	w := ex.normal(module+".weight", []int64{int64(width)}, 1, normStd)
	x32 := castTo(s, x, ex.elem, dtype.Float32)
	sq := s.Op("Pow", []string{x32, ex.Scalar(dtype.Float32, 2)})
	mean := s.Op("ReduceMean", []string{sq}, graph.AttrInts("axes", -1), graph.AttrInt("keepdims", 1))
	v := s.Op("Add", []string{mean, ex.Scalar(dtype.Float32, eps)})
	r := s.Op("Sqrt", []string{v})
	n := s.Op("Div", []string{x32, r})
	n = castTo(s, n, dtype.Float32, ex.elem)
	return s.Op("Mul", []string{w, n})
}

// layerNorm adds LayerNorm over the last axis with weight and bias
// <module>.weight and <module>.bias: one LayerNormalization node, or, when
// decomposed, ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add.
func (ex *exporter) layerNorm(s *graph.Builder, module, x string, width int, eps float64, decomposed bool) string {
	w := ex.normal(module+".weight", []int64{int64(width)}, 1, normStd)
	bias := ex.normal(module+".bias", []int64{int64(width)}, 0, normStd)
	if !decomposed {
		return s.Op("LayerNormalization", []string{x, w, bias},
			graph.AttrInt("axis", -1), graph.AttrFloat("epsilon", float32(eps)))
	}
	axes := []*onnxpb.AttributeProto{graph.AttrInts("axes", -1), graph.AttrInt("keepdims", 1)}
	mean := s.Op("ReduceMean", []string{x}, axes...)
	d := s.Op("Sub", []string{x, mean})
	sq := s.Op("Pow", []string{d, ex.Scalar(ex.elem, 2)})
	v := s.Op("ReduceMean", []string{sq}, axes...)
	v = s.Op("Add", []string{v, ex.Scalar(ex.elem, eps)})
	r := s.Op("Sqrt", []string{v})
	n := s.Op("Div", []string{d, r})
	n = s.Op("Mul", []string{n, w})
	return s.Op("Add", []string{n, bias})
}

// geluTanh adds GPT-2's gelu_new:
// 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).
func (ex *exporter) geluTanh(s *graph.Builder, x string) string {
	c := func(v float64) string { return ex.Scalar(ex.elem, v) }
	x3 := s.Op("Pow", []string{x, c(3)})
	t := s.Op("Mul", []string{x3, c(0.044715)})
	t = s.Op("Add", []string{x, t})
	t = s.Op("Mul", []string{t, c(math.Sqrt(2 / math.Pi))})
	t = s.Op("Tanh", []string{t})
	t = s.Op("Add", []string{t, c(1)})
	h := s.Op("Mul", []string{x, c(0.5)})
	return s.Op("Mul", []string{h, t})
}

// geluErf adds BERT's exact GELU: x·0.5·(1 + erf(x/√2)).
func (ex *exporter) geluErf(s *graph.Builder, x string) string {
	c := func(v float64) string { return ex.Scalar(ex.elem, v) }
	t := s.Op("Div", []string{x, c(math.Sqrt2)})
	t = s.Op("Erf", []string{t})
	t = s.Op("Add", []string{t, c(1)})
	t = s.Op("Mul", []string{x, t})
	return s.Op("Mul", []string{t, c(0.5)})
}

// splitHeads turns [batch, seq, heads·dim] into [batch, heads, seq, dim].
func (ex *exporter) splitHeads(s *graph.Builder, x string, heads, dim int) string {
	r := s.Op("Reshape", []string{x, ex.Int64s(0, 0, int64(heads), int64(dim))})
	return s.Op("Transpose", []string{r}, graph.AttrInts("perm", 0, 2, 1, 3))
}

// mergeHeads turns [batch, heads, seq, dim] into [batch, seq, heads·dim].
func (ex *exporter) mergeHeads(s *graph.Builder, x string, width int) string {
	t := s.Op("Transpose", []string{x}, graph.AttrInts("perm", 0, 2, 1, 3))
	return s.Op("Reshape", []string{t, ex.Int64s(0, 0, int64(width))})
}

// repeatKV turns [batch, kvHeads, seq, dim] into [batch, kvHeads·rep, seq,
// dim], each KV head repeated rep times in place (HF's repeat_kv):
// Unsqueeze, Expand, Reshape.
func (ex *exporter) repeatKV(s *graph.Builder, x string, kvHeads, rep, dim int) string {
	if rep == 1 {
		return x
	}
	u := s.Op("Unsqueeze", []string{x, ex.Int64s(2)})
	e := s.Op("Expand", []string{u, ex.Int64s(1, 1, int64(rep), 1, 1)})
	return s.Op("Reshape", []string{e, ex.Int64s(0, int64(kvHeads*rep), -1, int64(dim))})
}

// attention adds softmax(q·kᵀ/√dim + mask)·v for q [batch, heads, seq, dim]
// and k, v [batch, heads, total, dim]; mask broadcasts to
// [batch, heads, seq, total]. The scaling is a Div by √dim where divide is
// set (GPT-2, BERT) and a Mul by 1/√dim otherwise (LLaMA). A float16 model
// takes its softmax in float32, as HuggingFace does.
func (ex *exporter) attention(s *graph.Builder, q, k, v, mask string, dim int, divide bool) string {
	kt := s.Op("Transpose", []string{k}, graph.AttrInts("perm", 0, 1, 3, 2))
	sc := s.Op("MatMul", []string{q, kt})
	if divide {
		sc = s.Op("Div", []string{sc, ex.Scalar(ex.elem, math.Sqrt(float64(dim)))})
	} else {
		sc = s.Op("Mul", []string{sc, ex.Scalar(ex.elem, 1/math.Sqrt(float64(dim)))})
	}
	sc = s.Op("Add", []string{sc, mask})
	sc = castTo(s, sc, ex.elem, dtype.Float32)
	p := s.Op("Softmax", []string{sc}, graph.AttrInt("axis", -1))
	p = castTo(s, p, dtype.Float32, ex.elem)
	return s.Op("MatMul", []string{p, v})
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
func (ex *exporter) causalMask(s *graph.Builder, ids, amask string) (mask, qpos string) {
	ok, qpos := ex.causalAllowed(s, ids, amask)
	mask = s.Op("Where", []string{ok, ex.Scalar(ex.elem, 0), ex.Scalar(ex.elem, lowest(ex.elem))})
	return mask, qpos
}

// causalAllowed adds the bool [batch, 1, seq, total] that says where
// query i may see key j (j ≤ past+i and attention_mask[b, j] = 1), and
// returns it with the queries' positions past … total−1, [seq] int64.
func (ex *exporter) causalAllowed(s *graph.Builder, ids, amask string) (ok, qpos string) {
	seq := s.Op("Gather", []string{s.Op("Shape", []string{ids}), ex.Int64(1)}, graph.AttrInt("axis", 0))
	t := s.Op("Gather", []string{s.Op("Shape", []string{amask}), ex.Int64(1)}, graph.AttrInt("axis", 0))
	past := s.Op("Sub", []string{t, seq})
	qpos = s.Op("Range", []string{past, t, ex.Int64(1)})
	kpos := s.Op("Range", []string{ex.Int64(0), t, ex.Int64(1)})
	col := s.Op("Unsqueeze", []string{qpos, ex.Int64s(1)})
	causal := s.Op("LessOrEqual", []string{kpos, col}) // [seq, total]
	pad := s.Op("Cast", []string{amask}, graph.AttrInt("to", int64(dtype.Bool)))
	pad = s.Op("Unsqueeze", []string{pad, ex.Int64s(1, 2)}) // [batch, 1, 1, total]
	ok = s.Op("And", []string{causal, pad})
	return ok, qpos
}

// finish checks the model and returns it.
func (ex *exporter) finish(family string) (*graph.Model, error) {
	if err := ex.Model().Validate(); err != nil {
		return nil, errorf("%s: built an invalid graph: %w", family, err)
	}
	return ex.Model(), nil
}
