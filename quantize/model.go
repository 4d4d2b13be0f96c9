package quantize

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	"github.com/peftonnx/peftonnx/rewrite"
)

// Model quantizes the linear layers of m in place: every MatMul and Gemm
// that rewrite.FindLinears finds (a 2-D float weight initializer, reached
// directly or through Cast, Transpose and Identity nodes) and that
// o.Targets choose becomes a com.microsoft MatMulNBits node with the same
// input and output, its weight rounded to nearest block-wise (see
// quant.Quantize). Names follow ONNX Runtime's quantizer, which the
// onnxruntime-genai model builder runs: node "/model/layers.0/attn/q_proj/MatMul"
// becomes "/model/layers.0/attn/q_proj/MatMul_Q4", and weight
// "model.layers.0.attn.q_proj.MatMul.weight" becomes
// "…weight_Q4", "…weight_scales" and (asymmetric) "…weight_zero_points".
//
// A Gemm becomes MatMulNBits with its C as the bias input; alpha is folded
// into the weight before quantization and beta into a copy of the bias. A
// layer that cannot be quantized is left in float and listed in
// Report.Skipped with the reason: a Gemm with transA, a Gemm whose C is not
// an [N] initializer, a layer computing in another type than float32 or
// float16 (the types of ONNX Runtime's CPU kernel). The float weights,
// and the Cast, Transpose and Identity nodes between them and the layers,
// are removed where nothing else reads them; a weight that another node
// also reads (a tied embedding) stays. Layers that read one weight share
// its packed tensors.
//
// With o.Embeddings, every embedding (a Gather on axis 0 of a 2-D float
// table, found by rewrite.FindLayers; Targets do not choose them) also
// becomes a com.microsoft GatherBlockQuantized node, its table rounded to
// nearest in blocks along each row (see Embedding), as the
// onnxruntime-genai model builder ships int4 embeddings; one that cannot
// (2 bits, rows that are not whole blocks) is listed in Report.Skipped. A
// table that lm_head also reads becomes lm_head's packed copy and the
// embedding's, and the float table goes.
//
// A model that carries LoRA branches or a prefix is refused: merge or
// quantize the base first. Targets that match nothing are an error that
// lists the modules, and so is a model none of whose chosen layers can be
// quantized. These checks come before any change; an error after them (a
// weight whose data cannot be read) leaves m partly quantized, so work on
// a Clone where that matters.
func Model(m *graph.Model, o Options) (*Report, error) {
	o = o.withDefaults()
	if err := o.check(); err != nil {
		return nil, err
	}
	label := modelLabel(m)
	for _, p := range m.Proto.MetadataProps {
		switch p.Key {
		case rewrite.MetadataKey:
			return nil, errorf("%s carries LoRA branches (%q metadata): merge them first (peftonnx merge), or quantize the base model instead", label, p.Key)
		case rewrite.PrefixMetadataKey:
			return nil, errorf("%s carries a prefix (%q metadata): quantize the base model instead", label, p.Key)
		}
	}
	linears, err := rewrite.FindLinears(m)
	if err != nil {
		return nil, errorf("%s: %w", label, err)
	}
	linears = slices.DeleteFunc(linears, rewrite.Linear.Quantized) // int4 already
	chosen := linears
	if len(o.Targets) > 0 {
		if chosen, err = rewrite.MatchTargets(linears, o.Targets); err != nil {
			return nil, errorf("%s: %w", label, err)
		}
	}
	var embs []rewrite.Linear
	if o.Embeddings {
		if embs, err = embeddings(m); err != nil {
			return nil, errorf("%s: %w", label, err)
		}
	}
	if len(linears) == 0 && len(embs) == 0 {
		return nil, errorf("%s has no linear layer to quantize (a MatMul or Gemm whose weight is a 2-D float initializer)%s", label, nestedLayersNote(m))
	}

	rep := &Report{Options: o, Linears: len(chosen)}
	var todo, embTodo []rewrite.Linear
	for _, l := range chosen {
		if why := unsupported(m, l); why != "" {
			rep.Skipped = append(rep.Skipped, Skipped{Module: l.Module, Node: l.NodeName, Reason: why})
			continue
		}
		todo = append(todo, l)
	}
	for _, l := range embs {
		if why := unsupportedEmbedding(m, l, o); why != "" {
			rep.Skipped = append(rep.Skipped, Skipped{Module: l.Module, Node: l.NodeName, Reason: why})
			continue
		}
		embTodo = append(embTodo, l)
	}
	if len(todo) == 0 && len(embTodo) == 0 {
		var whys []string
		for _, s := range rep.Skipped {
			whys = append(whys, s.Module+": "+s.Reason)
		}
		return nil, errorf("%s: none of the %d chosen linear layers can be quantized (%s)", label, len(chosen), strings.Join(whys, "; "))
	}

	// What the graph got wrong before (PyTorch 1.6 exports define some
	// Constant outputs twice, which ONNX Runtime runs) is not the
	// quantizer's to report; what it would add is.
	before := problems(m.Validate())
	q := &quantizer{m: m, o: o, done: map[weightKey]*packed{}, position: map[*onnxpb.NodeProto]int{}}
	for i, n := range m.Graph().Node {
		q.position[n] = i
	}
	var sums errorSums
	for i, l := range todo {
		layer, err := q.layer(l, i, &sums)
		if err != nil {
			return nil, errorf("%s: layer %s: %w", label, l.Module, err)
		}
		rep.Layers = append(rep.Layers, layer)
	}
	for _, l := range embTodo {
		e, err := q.embedding(l, &sums)
		if err != nil {
			return nil, errorf("%s: embedding %s: %w", label, l.Module, err)
		}
		rep.Embeddings = append(rep.Embeddings, e)
	}
	m.Reindex()
	q.removeUnread()
	if m.Opset(quant.Domain) == 0 {
		m.SetOpset(quant.Domain, 1)
	}
	if err := newProblems(m.Validate(), before); err != nil {
		return nil, errorf("%s: the quantized graph is invalid: %w", label, err)
	}
	rep.MaxAbsError = sums.maxAbs
	rep.RelError = ratio(sums.errSq, sums.refSq)
	rep.OutputRelError = ratio(sums.outErrSq, sums.outRefSq)
	rep.FloatBytes, rep.PackedBytes = sums.floatBytes, sums.packedBytes
	return rep, nil
}

// unsupported returns why l cannot become a MatMulNBits node, or "".
func unsupported(m *graph.Model, l rewrite.Linear) string {
	if l.Dequantized() {
		return fmt.Sprintf("its weight is already quantized (%s behind DequantizeLinear)", l.WeightDType)
	}
	if m.Input(l.Weight) != nil {
		return fmt.Sprintf("its weight %q is also a graph input, which a packed MatMulNBits weight cannot replace", l.Weight)
	}
	if l.DType != dtype.Float32 && l.DType != dtype.Float16 {
		return fmt.Sprintf("it computes in %s, and ONNX Runtime's CPU MatMulNBits takes float32 or float16", l.DType)
	}
	if l.Op != "Gemm" {
		return ""
	}
	if l.TransA {
		return "a Gemm with transA=1"
	}
	n := l.Node
	if len(n.Input) > 2 && n.Input[2] != "" {
		c := m.Initializer(n.Input[2])
		switch {
		case l.Bias == "" || c == nil:
			return fmt.Sprintf("Gemm's C %q is not an initializer", n.Input[2])
		case len(c.Dims) != 1 || c.Dims[0] != l.Out:
			return fmt.Sprintf("Gemm's C %q has shape %v, not [%d]", c.Name, c.Dims, l.Out)
		case graph.TypeOf(c) != l.DType:
			return fmt.Sprintf("Gemm's C %q is %s, not %s", c.Name, graph.TypeOf(c), l.DType)
		}
	}
	return ""
}

// weightKey identifies the float matrix a layer multiplies by.
type weightKey struct {
	weight     string
	transposed bool
	alpha      float32
	elem       dtype.Type
}

// packed is a weight already quantized, and its layer's errors.
type packed struct {
	w                 *quant.Weight
	names             quant.TensorNames
	maxAbs, rel, outR float64
}

// quantizer holds what Model's layers share.
type quantizer struct {
	m        *graph.Model
	o        Options
	done     map[weightKey]*packed
	position map[*onnxpb.NodeProto]int
	// unreadNodes and unreadInits are to be removed if nothing reads them
	// once every layer is replaced: the chain nodes, each chain from the
	// layer back to its weight, and the float weights.
	unreadNodes []*onnxpb.NodeProto
	unreadInits []string
}

// addPacked adds the initializers that tensors (w.Tensors or
// w.GatherTensors) makes of w, the quantized weight of l, under names made
// unique from quant.BuilderNames, and counts in sums their bytes and those
// of the float weight's elements. It returns the names.
func (q *quantizer) addPacked(l rewrite.Linear, w *quant.Weight, tensors func(quant.TensorNames) ([]*onnxpb.TensorProto, error), elements int, sums *errorSums) (quant.TensorNames, error) {
	m := q.m
	base := quant.BuilderNames(l.Weight, q.o.Bits)
	names := quant.TensorNames{B: m.UniqueName(base.B), Scales: m.UniqueName(base.Scales)}
	if !w.Symmetric() {
		names.ZeroPoints = m.UniqueName(base.ZeroPoints)
	}
	ts, err := tensors(names)
	if err != nil {
		return quant.TensorNames{}, err
	}
	for _, t := range ts {
		m.AddInitializer(t)
		sums.packedBytes += int64(len(t.RawData))
	}
	sums.floatBytes += int64(elements) * int64(graph.TypeOf(m.Initializer(l.Weight)).Size())
	return names, nil
}

// layer replaces the node of l, the i-th layer quantized.
func (q *quantizer) layer(l rewrite.Linear, i int, sums *errorSums) (Layer, error) {
	m, o := q.m, q.o
	k, n := int(l.In), int(l.Out)
	key := weightKey{l.Weight, l.WeightTransposed, l.Alpha, l.DType}
	p, shared := q.done[key]
	if !shared {
		values, err := weightMatrix(m, l)
		if err != nil {
			return Layer{}, err
		}
		w, err := quant.Quantize(values, k, n, quant.Options{Bits: o.Bits, BlockSize: o.BlockSize, Symmetric: o.Symmetric, ScaleType: l.DType})
		if err != nil {
			return Layer{}, err
		}
		names, err := q.addPacked(l, w, w.Tensors, k*n, sums)
		if err != nil {
			return Layer{}, err
		}
		deq, err := w.Dequantize()
		if err != nil {
			return Layer{}, err
		}
		x := normals(OutputRows*k, o.Seed+uint64(i))
		p = &packed{w: w, names: names}
		p.maxAbs, p.rel, p.outR = sums.add(values, deq, k, n, x)
		q.done[key] = p
	}

	bias := ""
	if l.Op == "Gemm" && l.Bias != "" {
		bias = l.Bias
		if l.Beta != 1 {
			c := m.Initializer(l.Bias)
			v, err := m.Float32s(c)
			if err != nil {
				return Layer{}, err
			}
			for j := range v {
				v[j] *= l.Beta
			}
			bias = m.UniqueName(l.Bias + "_beta")
			m.AddInitializer(graph.NewFloat32Tensor(bias, graph.TypeOf(c), c.Dims, v))
			q.unreadInits = append(q.unreadInits, l.Bias)
		}
	}
	name := q.nodeName(l)
	node, err := p.w.Node(p.names, quant.NodeOptions{Name: name, A: l.Input, Y: l.Output, Bias: bias, AccuracyLevel: o.AccuracyLevel})
	if err != nil {
		return Layer{}, err
	}
	q.replace(l, node)
	return Layer{
		Module: l.Module, Node: l.NodeName, Op: l.Op, NewNode: name,
		Weight: l.Weight, Tensors: p.names, K: k, N: n,
		MaxAbsError: p.maxAbs, RelError: p.rel, OutputRelError: p.outR,
		Shared: shared,
	}, nil
}

// nodeName returns the unique name of the node that replaces l's, as the
// builder names it; "" when l's node has no name.
func (q *quantizer) nodeName(l rewrite.Linear) string {
	if l.NodeName == "" {
		return ""
	}
	return q.m.UniqueName(quant.BuilderNodeName(l.NodeName, q.o.Bits))
}

// replace puts node in the place of l's node, so that the order stays
// topological (the indexes are rebuilt once all layers are done), and
// leaves l's weight chain and float weight to removeUnread.
func (q *quantizer) replace(l rewrite.Linear, node *onnxpb.NodeProto) {
	q.m.Graph().Node[q.position[l.Node]] = node
	for _, c := range slices.Backward(l.WeightChain) {
		q.unreadNodes = append(q.unreadNodes, c)
	}
	q.unreadInits = append(q.unreadInits, l.Weight)
}

// removeUnread removes the chain nodes and float weights of the replaced
// layers that nothing reads any more.
func (q *quantizer) removeUnread() {
	m := q.m
	read := func(v string) bool { return len(m.Consumers(v)) > 0 || m.IsGraphOutput(v) }
	for _, n := range q.unreadNodes {
		if m.Producer(n.Output[0]) == n && !read(n.Output[0]) {
			m.RemoveNodes(n)
		}
	}
	for _, w := range q.unreadInits {
		if m.Initializer(w) != nil && !read(w) {
			m.RemoveInitializer(w)
		}
	}
}

// weightMatrix returns l's weight as the [In, Out] float32 matrix the
// node multiplies by, times Gemm's alpha.
func weightMatrix(m *graph.Model, l rewrite.Linear) ([]float32, error) {
	t := m.Initializer(l.Weight)
	v, err := m.Float32s(t)
	if err != nil {
		return nil, err
	}
	k, n := int(l.In), int(l.Out)
	if l.WeightTransposed { // stored [Out, In]
		tv := make([]float32, len(v))
		for j := range n {
			for i := range k {
				tv[i*n+j] = v[j*k+i]
			}
		}
		v = tv
	}
	if l.Alpha != 1 {
		for i := range v {
			v[i] *= l.Alpha
		}
	}
	return v, nil
}

// normals returns n standard normal values, deterministic in seed.
func normals(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// modelLabel names m in messages: its file, or "model".
func modelLabel(m *graph.Model) string {
	if m.Path != "" {
		return m.Path
	}
	return "model"
}

// nestedLayersNote says which layers sit inside subgraphs, where quantize
// does not reach; "" where none do.
func nestedLayersNote(m *graph.Model) string {
	nested := rewrite.FindNestedLayers(m)
	if len(nested) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d sit inside If/Loop/Scan subgraphs (%s %q in %s of %q, …), which quantize does not reach", len(nested), nested[0].Op, nested[0].Node, nested[0].Attr, nested[0].Owner)
}

// problems returns the messages of the problems that err, an error of
// graph.Model.Validate (errors.Join of one per problem), reports.
func problems(err error) map[string]bool {
	out := map[string]bool{}
	for _, e := range problemList(err) {
		out[e.Error()] = true
	}
	return out
}

// newProblems returns, joined, the problems of err (from
// graph.Model.Validate) that are not among before, or nil.
func newProblems(err error, before map[string]bool) error {
	var errs []error
	for _, e := range problemList(err) {
		if !before[e.Error()] {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

// problemList splits err, an error of graph.Model.Validate, into its
// problems.
func problemList(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}
