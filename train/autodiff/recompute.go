package autodiff

import (
	"regexp"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
)

// maxRecomputeChain bounds how many forward nodes, not read by the
// backward pass themselves, a recomputed product may pull in.
const maxRecomputeChain = 8

// recomputer holds the state of one recomputation pass.
type recomputer struct {
	b *gradientPass
	e *emitter
	// products: also recompute the products of an activation with a
	// frozen matrix (WithRecomputeProducts); int4: those with a frozen
	// int4 (MatMulNBits) weight, products on or not
	// (WithRecomputeInt4Products).
	products, int4 bool
	// layers: recompute everything a layer makes from its input
	// (WithRecomputeLayers); boundary holds the values that leave a
	// layer, which are kept.
	layers   bool
	layerOf  map[string]string // value -> the layer scope that makes it
	boundary map[string]bool
	// shared holds the forward values that nodes of several layers read
	// (an attention mask, rotary tables): alive through the forward pass
	// anyway, they are read as they are, not made again for each layer.
	shared map[string]bool

	made     map[string]bool // values the forward nodes make
	dynamic  map[string]bool // values that depend on a graph input
	producer map[string]*onnxpb.NodeProto
	readers  map[string][]*onnxpb.NodeProto // backward readers of forward values
	again    map[string]string              // forward value -> its recomputed copy
}

// recompute lowers what the forward pass keeps for the backward pass: a
// value that backward nodes read, made by a cheap element-wise forward
// node whose inputs the backward pass keeps anyway (or are constants, or
// were recomputed themselves), is made again by a copy of that node next
// to its backward readers, so that the forward value dies with the
// forward pass. For a LLaMA MLP, the SiLU's sigmoid and product and the
// RMSNorm's division and scaling go: several hundred megabytes for a
// GPT-2-small-sized model at 8×128.
//
// The default pass also makes attention's probabilities again: a
// softmax over q·kᵀ (a product of two activations over a head's width,
// scoresProduct) and the mask, where the backward pass keeps q and k
// anyway, so that no layer keeps its [batch, heads, seq, seq]
// probabilities from the forward pass to its backward pass, for one more
// q·kᵀ and softmax a layer. A chain of such nodes is followed up to
// maxRecomputeChain deep; a value that nodes of several layers read (the
// mask, rotary tables) is read as it is (shared).
//
// With products on, the products of an activation with a frozen 2-D
// weight (MatMul, Gemm) are recomputed too, together with the cheap nodes
// that lead to them from kept values (a normalization, say): for a LLaMA
// MLP, its gate and up projections, the largest values the backward pass
// keeps, for one more product each in the backward pass. With int4
// products on (or products), an int4 product (com.microsoft MatMulNBits
// with a frozen packed weight) is made again
// through its weight dequantized a slab at a time (see TimesNBits), not
// by a second MatMulNBits node, for which ONNX Runtime would keep one
// more pre-packed copy of the weight; so are the views (Reshape,
// Transpose, Concat, Split) between such a product and what reads it, as
// an int4 DoRA layer cuts its output from its node's rows (views).
//
// A copy that reads no recomputed value reads one of its forward inputs
// through a Reshape to that input's own shape (an alias, no copy), so that
// ONNX Runtime's common-subexpression pass does not merge the copy back
// into the forward node.
//
// With layers on (WithRecomputeLayers), every value that a node of a
// decoder layer (a node named under "layers.N/") makes is recomputed in
// the backward pass from the values that enter that layer, whatever its
// op, but for random ones (Dropout); only the values that leave a layer
// (read by a node outside it: the residual stream) are kept, as torch's
// checkpoint of whole layers does. The copies make the same values, so
// the gradients are unchanged.
func (b *gradientPass) recompute(products, int4, layers bool) {
	r := &recomputer{
		b: b, e: newEmitter(b.m, b.inf, b.opset), products: products || layers, int4: int4 || products || layers, layers: layers,
		made: map[string]bool{}, dynamic: map[string]bool{}, producer: map[string]*onnxpb.NodeProto{},
		readers: map[string][]*onnxpb.NodeProto{}, again: map[string]string{},
		layerOf: map[string]string{}, boundary: map[string]bool{}, shared: map[string]bool{},
	}
	r.e.scope = "recompute"
	forward := map[*onnxpb.NodeProto]bool{}
	for _, in := range b.m.Graph().Input {
		if b.m.Initializer(in.Name) == nil {
			r.dynamic[in.Name] = true
		}
	}
	for _, n := range b.nodes {
		forward[n] = true
		dyn := false
		for _, in := range n.Input {
			dyn = dyn || r.dynamic[in]
		}
		for _, o := range n.Output {
			r.made[o] = true
			r.dynamic[o] = dyn
			r.producer[o] = n
		}
	}
	for _, n := range b.m.Graph().Node {
		if forward[n] {
			continue
		}
		for _, in := range n.Input {
			if r.made[in] {
				r.readers[in] = append(r.readers[in], n)
			}
		}
	}
	r.findShared()
	if layers {
		r.findLayers()
	} else {
		r.expansions()
	}
	for _, n := range b.nodes {
		if !(len(n.Output) == 1 && r.candidate(n)) && !r.viewOfNBits(n, 0) {
			continue
		}
		read := false
		for _, v := range n.Output {
			if r.boundary[v] || b.m.IsGraphOutput(v) {
				read = false
				break
			}
			read = read || len(r.readers[v]) > 0
		}
		if !read {
			continue
		}
		if _, ok := r.copyOf(n, 0); !ok {
			continue
		}
		for _, v := range n.Output {
			c := r.again[v]
			for _, rd := range r.readers[v] {
				for i, in := range rd.Input {
					if in == v {
						b.m.SetNodeInput(rd, i, c)
					}
				}
			}
			delete(r.readers, v)
		}
	}
}

// candidate reports whether n is a default-domain node whose output may
// be recomputed: a cheap element-wise op (its registry entry's recompute),
// or with products on, a product of an activation with a frozen matrix,
// an int4 one (MatMulNBits) included.
func (r *recomputer) candidate(n *onnxpb.NodeProto) bool {
	if quant.IsNode(n) {
		return r.int4 && r.frozenNBits(n)
	}
	k := key(n.Domain, n.OpType)
	e := registry[k]
	if k.domain != "" || e == nil {
		return false
	}
	if e.recompute {
		return true
	}
	if r.layers && r.layerOf[n.Output[0]] != "" && e.grad != nil && !random[n.OpType] {
		return true
	}
	if e.product == nil || !e.product(n) {
		return false
	}
	return (r.products && r.frozenMatrix(n)) || r.scoresProduct(n)
}

// maxScoresInner bounds the inner dimension of a product of two
// activations that the default pass recomputes: a head's width.
const maxScoresInner = 128

// scoresProduct reports whether the product n multiplies two batched
// activations over a static inner dimension of at most maxScoresInner,
// as attention's q·kᵀ does over a head's width: cheap to make again
// (2·seq²·head FLOP a head), and what gives back the attention
// probabilities, [batch, heads, seq, seq], that the backward pass would
// otherwise keep for every layer.
func (r *recomputer) scoresProduct(n *onnxpb.NodeProto) bool {
	if n.OpType != "MatMul" || len(n.Input) != 2 || !r.dynamic[n.Input[0]] || !r.dynamic[n.Input[1]] {
		return false
	}
	a, b := r.b.inf.get(n.Input[0]).shape, r.b.inf.get(n.Input[1]).shape
	if a.rank() < 3 || b.rank() < 3 {
		return false
	}
	inner := a.dims[a.rank()-1]
	return inner.static() && inner.v > 0 && inner.v <= maxScoresInner
}

// random are the ops whose output a copy would not make again.
var random = map[string]bool{"Dropout": true, "RandomNormal": true, "RandomNormalLike": true, "RandomUniform": true, "RandomUniformLike": true, "Multinomial": true, "Bernoulli": true}

// layerScope finds the decoder layer in a node's name: "layers.3" in
// "/model/layers.3/self_attn/q_proj/MatMul".
var layerScope = regexp.MustCompile(`(^|/)(layers?|h|blocks?)\.(\d+)/`)

// findLayers sets layerOf for the values made by nodes of a decoder layer
// and marks as boundaries those read by a forward node of another layer
// or of none, or by no forward node (graph outputs).
func (r *recomputer) findLayers() {
	for _, n := range r.b.nodes {
		if m := layerScope.FindStringSubmatch(n.Name); m != nil {
			for _, o := range n.Output {
				r.layerOf[o] = m[2] + "." + m[3]
			}
		}
	}
	for _, n := range r.b.nodes {
		scope := ""
		if m := layerScope.FindStringSubmatch(n.Name); m != nil {
			scope = m[2] + "." + m[3]
		}
		for _, in := range n.Input {
			if l := r.layerOf[in]; l != "" && l != scope {
				r.boundary[in] = true
			}
		}
	}
	for _, o := range r.b.m.Graph().Output {
		r.boundary[o.Name] = true
	}
}

// findShared sets shared for the forward values read by forward nodes of
// two or more decoder layers.
func (r *recomputer) findShared() {
	readBy := map[string]string{}
	for _, n := range r.b.nodes {
		m := layerScope.FindStringSubmatch(n.Name)
		if m == nil {
			continue
		}
		scope := m[2] + "." + m[3]
		for _, in := range n.Input {
			if !r.made[in] {
				continue
			}
			if prev, ok := readBy[in]; ok && prev != scope {
				r.shared[in] = true
			}
			readBy[in] = scope
		}
	}
}

// frozenNBits reports whether MatMulNBits node n multiplies an activation
// by a frozen packed weight of float32 A that TimesNBits can recompute: its
// packed tensors initializers, no g_idx.
func (r *recomputer) frozenNBits(n *onnxpb.NodeProto) bool {
	if _, err := quant.LayoutOf(n); err != nil || !r.dynamic[n.Input[quant.InputA]] || r.b.inf.get(n.Input[quant.InputA]).elem != dtype.Float32 {
		return false
	}
	for i, in := range n.Input {
		switch {
		case in == "" || i == quant.InputA:
		case i == quant.InputGIdx || r.dynamic[in] || (i != quant.InputBias && r.b.m.Initializer(in) == nil):
			return false
		}
	}
	return true
}

// frozenMatrix reports whether the product n multiplies an activation
// (input 0 depends on a graph input) by a frozen 2-D matrix (input 1 does
// not).
func (r *recomputer) frozenMatrix(n *onnxpb.NodeProto) bool {
	if len(n.Input) < 2 || !r.dynamic[n.Input[0]] || r.dynamic[n.Input[1]] {
		return false
	}
	return r.b.inf.get(n.Input[1]).shape.rank() == 2
}

// kept reports whether the backward pass keeps v alive anyway: a constant
// or graph input, or a forward value that backward nodes read and that is
// not (or not yet) recomputed.
func (r *recomputer) kept(v string) bool { return !r.made[v] || len(r.readers[v]) > 0 }

// avail returns the name under which the backward pass can read v without
// keeping a forward value alive for it: v itself where it is kept anyway,
// or a copy, recomputed now if need be (with products on, and within
// depth).
func (r *recomputer) avail(v string, depth int) (string, bool) {
	if c, ok := r.again[v]; ok {
		return c, true
	}
	if v == "" {
		return "", false
	}
	if r.kept(v) || r.boundary[v] || r.shared[v] {
		return v, true
	}
	p := r.producer[v]
	if (depth >= maxRecomputeChain && !r.layers) || p == nil || !r.chainCandidate(p) {
		return "", false
	}
	if _, ok := r.copyOf(p, depth+1); !ok {
		return "", false
	}
	return r.again[v], true
}

// views are the ops that only move elements. With products on, a view
// that an int4 product reaches through views alone (viewOfNBits) is made
// again from the product's copy, as the product's own output is: an int4
// DoRA layer's output is rows of its node's product of the activation's
// rows with Aᵀ's appended (Reshape, Transpose, Concat, Split: rewrite's
// dora_nbits.go).
var views = map[string]bool{"Reshape": true, "Transpose": true, "Concat": true, "Split": true}

// chainCandidate reports whether n may be made again on the way to a
// value that a recomputed node reads: a candidate, or a view of an int4
// product.
func (r *recomputer) chainCandidate(n *onnxpb.NodeProto) bool {
	if r.viewOfNBits(n, 0) {
		return true
	}
	return len(n.Output) == 1 && r.candidate(n)
}

// viewOfNBits reports whether, with int4 products on, n is a view (a Split, or
// one of one output) that reads, through views alone, a recomputable int4
// (MatMulNBits) product, or that such a product reads: the int4 DoRA
// layer's rows and what is cut from them.
func (r *recomputer) viewOfNBits(n *onnxpb.NodeProto, depth int) bool {
	if !r.int4 || n.Domain != "" || !views[n.OpType] || depth >= maxRecomputeChain || (len(n.Output) != 1 && n.OpType != "Split") {
		return false
	}
	if r.feedsNBits(n, depth) {
		return true
	}
	for _, in := range n.Input {
		p := r.producer[in]
		switch {
		case p == nil:
		case quant.IsNode(p) && r.frozenNBits(p):
			return true
		case r.viewOfNBits(p, depth+1):
			return true
		}
	}
	return false
}

// feedsNBits reports whether an output of n reaches the input A of a
// recomputable int4 product through views and casts alone.
func (r *recomputer) feedsNBits(n *onnxpb.NodeProto, depth int) bool {
	if depth >= maxRecomputeChain {
		return false
	}
	for _, o := range n.Output {
		for _, c := range r.b.m.Consumers(o) {
			switch {
			case quant.IsNode(c):
				if c.Input[quant.InputA] == o && r.frozenNBits(c) {
					return true
				}
			case c.Domain == "" && (views[c.OpType] || c.OpType == "Cast") && r.feedsNBits(c, depth+1):
				return true
			}
		}
	}
	return false
}

// small reports whether v is a small integer tensor (a shape, sizes),
// which a view's copy reads as it is: keeping it costs nothing.
func (r *recomputer) small(v string) bool {
	t := r.b.inf.get(v)
	return (t.elem == dtype.Int64 || t.elem == dtype.Int32) && t.shape.ok && t.shape.rank() <= 1
}

// copyOf emits a copy of the forward node n that reads available values,
// records it as the copy of n's outputs and returns its first output; ok is false
// when an input is not available or none depends on a graph input (a node
// of constants alone is folded by ONNX Runtime, and a copy would be folded
// into a second constant).
func (r *recomputer) copyOf(n *onnxpb.NodeProto, depth int) (string, bool) {
	inputs := make([]string, len(n.Input))
	activation, fresh := false, false
	view := views[n.OpType] && n.Domain == ""
	for i, in := range n.Input {
		if in == "" && quant.IsNode(n) {
			continue // an absent optional input (g_idx before a bias)
		}
		c, ok := r.avail(in, depth)
		if !ok && view && (r.small(in) || !r.dynamic[in]) {
			// A shape, or a constant (Aᵀ of a frozen A), which ONNX
			// Runtime folds: keeping it costs nothing.
			c, ok = in, true
		}
		if !ok {
			return "", false
		}
		inputs[i] = c
		activation = activation || r.dynamic[in]
		fresh = fresh || c != in
	}
	if !activation {
		return "", false
	}
	if !fresh {
		for i, in := range n.Input {
			if r.dynamic[in] {
				inputs[i] = r.e.op("Reshape", []string{in, r.e.op("Shape", []string{in})})
				r.e.inf.record(inputs[i], *r.b.inf.get(in))
				break
			}
		}
	}
	var cs []string
	if quant.IsNode(n) {
		cs = []string{r.nbitsCopy(n, inputs)}
	} else {
		cs = r.e.emit(n.Domain, n.OpType, inputs, len(n.Output), n.Attribute...)
	}
	for i, v := range n.Output {
		if v != "" {
			r.e.inf.record(cs[i], *r.b.inf.get(v))
			r.again[v] = cs[i]
		}
	}
	return cs[0], true
}

// nbitsCopy emits the copy of MatMulNBits node n over inputs as
// TimesNBits computes it, the weight dequantized a slab at a time: a new
// MatMulNBits node would have ONNX Runtime keep one more pre-packed copy
// of the weight.
func (r *recomputer) nbitsCopy(n *onnxpb.NodeProto, inputs []string) string {
	e := r.e
	l, _ := quant.LayoutOf(n) // checked by frozenNBits
	a := inputs[quant.InputA]
	shape := e.op("Shape", []string{a})
	rows := e.op("Reshape", []string{a, e.ints(-1, int64(l.K))})
	e.inf.record(rows, tinfo{elem: dtype.Float32, shape: unknownShape()})
	y := e.timesNBits(n, l, rows)
	if bias := inputOr(n, quant.InputBias); bias != "" {
		y = e.add(y, inputs[quant.InputBias])
	}
	lead := e.op("Slice", []string{shape, e.ints(0), e.ints(-1)})
	return e.op("Reshape", []string{y, e.concatInts(lead, e.ints(int64(l.N)))})
}
