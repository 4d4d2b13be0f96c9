package rewrite

import (
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
)

// Linear is one linear layer of a graph, y = x·W (+ bias): a MatMul whose
// second input is a 2-D floating-point weight initializer, or a Gemm whose B
// input is one. The weight may reach the node through Cast, Transpose and
// Identity nodes; In and Out describe the weight as the node uses it.
type Linear struct {
	// Module is the layer's module name (see FindLinears).
	Module string
	// NameFrom says where Module came from: "node", "weight", "bias" or
	// "fallback".
	NameFrom string
	// Node is the MatMul or Gemm node.
	Node *onnxpb.NodeProto
	// NodeName is Node's name; it may be empty.
	NodeName string
	// Op is "MatMul", "Gemm", "MatMulNBits" (OpMatMulNBits; see
	// linear_nbits.go) or "Attention" (OpAttention; fused_attention.go).
	Op string
	// Input is the activation x that the node multiplies, and Output is y.
	Input, Output string
	// Weight is the initializer that holds W.
	Weight string
	// WeightChain lists the Cast, Transpose and Identity nodes between the
	// initializer and Node, in the order the data flows.
	WeightChain []*onnxpb.NodeProto
	// WeightDType is the initializer's element type; DType is the element
	// type the node computes in (the activation's type).
	WeightDType, DType dtype.Type
	// In and Out are the layer's input and output features: the node
	// computes with an [In, Out] matrix.
	In, Out int64
	// WeightTransposed reports whether the initializer is stored as
	// [Out, In]: a Transpose in the chain and Gemm's transB each flip it.
	WeightTransposed bool
	// Bias is the initializer added to the output (Gemm's C, or the single
	// Add that follows a MatMul), or "".
	Bias string
	// Alpha and Beta are Gemm's attributes (1 for MatMul): Gemm computes
	// Alpha·x·W + Beta·C.
	Alpha, Beta float32
	// TransA is Gemm's transA: the activation is read transposed.
	TransA bool
	// SharedWeight reports that the initializer or a node of its chain
	// is also read by something other than this layer, so the weight cannot
	// be changed in place.
	SharedWeight bool
	// PartWidths gives the widths of the contiguous q, k and v parts of a
	// packed projection inside fused attention (fused_attention.go), or
	// is nil.
	PartWidths []int64
	// Kind is the layer's kind: KindLinear (""), KindEmbedding or
	// KindConv (see FindLayers).
	Kind string
	// Kernel is a convolution's kernel shape, its weight's dims after
	// [out, in]; nil for other kinds.
	Kernel []int64
	// Head reports that the layer is the model's output head: its output
	// is a graph output, through reshapes, casts, a bias or a softmax at
	// most. AllLinear leaves it out, as HF PEFT's "all-linear" does.
	Head bool
	// Role is what the layer does in a transformer block where the
	// graph's structure shows it (query, key, value, output, gate, up,
	// down), and Block the index of that block; Role is "" elsewhere.
	Role  Role
	Block int
}

// FindLinears returns every linear layer of m in topological order.
//
// Module names follow the project's rule. A node named like an exporter's
// path, "/model/layers.0/self_attn/q_proj/MatMul", gives
// "model.layers.0.self_attn.q_proj": the leading "/" and the last segment
// go, and "/" becomes ".". A node without such a path ("Gemm_67", or no name)
// takes the module path of its weight's name: everything before the last
// dot-separated segment that starts with "weight", less a trailing op
// segment ("h.0.attn.c_attn.weight_resize" gives "h.0.attn.c_attn";
// "lm_head.MatMul.weight" gives "lm_head"). Failing that, the same rule is
// tried on the bias initializer's name ("….q_lin.bias"), which is how
// PyTorch exports with numbered weights still name their layers. Failing
// that too, the module is the node's name with "/" turned into ".", or
// "linear_<i>" for an unnamed node, where i counts the linear layers in
// topological order. Names that would repeat for different weights get
// "_1", "_2", … in topological order; layers that read the same weight
// share their module name, as one PyTorch module called twice does.
//
// In a model that carries LoRA branches, the branches' own MatMuls are not
// layers: FindLinears returns the base model's layers.
func FindLinears(m *graph.Model) ([]Linear, error) {
	order, err := baseNodes(m)
	if err != nil {
		return nil, err
	}
	return linearsIn(m, order), nil
}

// linearsIn returns the linear layers among order, m's base nodes in
// topological order, as FindLinears describes them.
func linearsIn(m *graph.Model, order []*onnxpb.NodeProto) []Linear {
	var out []Linear
	fed := fedInputs(m)
	for _, n := range order {
		l, ok := linearOf(m, n)
		if !ok {
			continue
		}
		if x, ok := fed[l.Input]; ok {
			l.Input = x
		}
		out = append(out, l)
	}
	assignRoles(m, out)
	nameLayers(out)
	markHeads(m, out)
	return out
}

// baseNodes returns m's nodes in topological order, less those that LoRA
// branches added.
func baseNodes(m *graph.Model) ([]*onnxpb.NodeProto, error) {
	order, err := m.TopoOrder()
	if err != nil {
		return nil, errorf("find layers: %w", err)
	}
	branch, err := branchNodes(m)
	if err != nil {
		return nil, err
	}
	out := order[:0:0]
	for _, n := range order {
		if n.Name == "" || !branch[n.Name] {
			out = append(out, n)
		}
	}
	return out, nil
}

// fedInputs maps what a base node of m reads now to the activation it
// read before injection, where a branch changed it (an int4 DoRA site's
// rows, dora_nbits.go): a layer's input is the activation.
func fedInputs(m *graph.Model) map[string]string {
	rec, ok, err := readRecord(m)
	if err != nil || !ok {
		return nil
	}
	out := map[string]string{}
	for _, s := range rec.Sites {
		if s.BaseInput != "" {
			out[s.BaseInput] = s.Input
		}
	}
	return out
}

// branchNodes returns the names of the nodes that LoRA branches added to
// m, from its metadata: they are not layers of the model.
func branchNodes(m *graph.Model) (map[string]bool, error) {
	rec, ok, err := readRecord(m)
	if err != nil || !ok {
		return nil, err
	}
	names := map[string]bool{}
	for _, s := range rec.Sites {
		for _, n := range s.Nodes {
			names[n] = true
		}
	}
	for _, n := range rec.SharedNodes {
		names[n] = true
	}
	return names, nil
}

// linearOf reports whether n is a linear layer and describes it.
func linearOf(m *graph.Model, n *onnxpb.NodeProto) (Linear, bool) {
	if quant.IsNode(n) {
		return nbitsLinearOf(m, n)
	}
	if isAttentionNode(n) {
		return attentionLinearOf(m, n, n.Input[1])
	}
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return Linear{}, false
	}
	if (n.OpType != "MatMul" && n.OpType != "Gemm") || len(n.Input) < 2 || len(n.Output) < 1 {
		return Linear{}, false
	}
	if n.Input[0] == "" || n.Input[1] == "" || m.Initializer(n.Input[0]) != nil {
		return Linear{}, false
	}
	path, ok := weightChain(m, n.Input[1])
	if !ok {
		return Linear{}, false
	}
	l := path.linear(n, n.Input[0])
	w := path.w
	trans := path.transposes%2 == 1
	if n.OpType == "Gemm" {
		if graph.IntAttr(n, "transB", 0) != 0 {
			trans = !trans
		}
		l.TransA = graph.IntAttr(n, "transA", 0) != 0
		l.Alpha = graph.FloatAttr(n, "alpha", 1)
		l.Beta = graph.FloatAttr(n, "beta", 1)
		l.Bias = initializerBias(m, n)
	} else {
		l.Bias = biasAfter(m, n.Output[0])
	}
	l.WeightTransposed = trans
	if trans {
		l.In, l.Out = w.Dims[1], w.Dims[0]
	} else {
		l.In, l.Out = w.Dims[0], w.Dims[1]
	}
	l.PartWidths = packedQKVWidths(m, l)
	return l, true
}

// weightPath is how a layer's weight reaches it, as weightChain finds it.
type weightPath struct {
	w          *onnxpb.TensorProto // the initializer
	chain      []*onnxpb.NodeProto // the nodes from w to the layer, in data-flow order
	transposes int                 // how many of them are Transposes
	elem       dtype.Type          // the element type that reaches the layer
	shared     bool                // whether any link of the chain has other readers
}

// linear returns the Linear of node n, which reads input and the weight
// that p reaches, with the fields that every kind of layer fills alike;
// the caller sets the rest (In and Out, Kind, Bias, …).
func (p weightPath) linear(n *onnxpb.NodeProto, input string) Linear {
	return Linear{
		Node: n, NodeName: n.Name, Op: n.OpType,
		Input: input, Output: n.Output[0],
		Weight: p.w.Name, WeightChain: p.chain,
		WeightDType: graph.TypeOf(p.w), DType: p.elem,
		Alpha: 1, Beta: 1,
		SharedWeight: p.shared,
	}
}

// initializerBias returns n's third input when it is an initializer (the
// bias of a Gemm, Conv or Attention), else "".
func initializerBias(m *graph.Model, n *onnxpb.NodeProto) string {
	if len(n.Input) > 2 && n.Input[2] != "" && m.Initializer(n.Input[2]) != nil {
		return n.Input[2]
	}
	return ""
}

// weightChain follows value back through Cast, Transpose (2-D, any perm is
// a swap) and Identity nodes to a 2-D floating-point initializer, and
// returns the path (see weightPath).
//
// The initializer may also be a graph input where the model lists its
// initializers as inputs, as exporters for IR versions before 4 do (and
// torch's keep_initializers_as_inputs); elsewhere such an input is a value
// meant to be fed, such as an ONNX Runtime adapter's parameter, and not a
// weight. A DequantizeLinear of an integer
// initializer ends the chain too (a QDQ model's weight): the initializer
// is the quantized one, and the chain starts with the DequantizeLinear.
func weightChain(m *graph.Model, value string) (weightPath, bool) {
	return weightChainOfRank(m, value, 2)
}

// weightChainOfRank is weightChain for an initializer of the given rank.
func weightChainOfRank(m *graph.Model, value string, rank int) (weightPath, bool) {
	var (
		chain      []*onnxpb.NodeProto
		transposes int
		shared     bool
		elem       dtype.Type = -1
	)
	for steps := 0; steps < 16; steps++ {
		if len(m.Consumers(value)) > 1 {
			shared = true
		}
		if t := m.Initializer(value); t != nil {
			if len(t.Dims) != rank || !graph.TypeOf(t).IsFloat() || (m.Input(value) != nil && !initializersAsInputs(m)) {
				return weightPath{}, false
			}
			if elem < 0 {
				elem = graph.TypeOf(t)
			}
			return weightPath{t, chain, transposes, elem, shared}, true
		}
		p := m.Producer(value)
		if p == nil || (p.Domain != "" && p.Domain != "ai.onnx") || len(p.Input) < 1 || len(p.Output) != 1 {
			return weightPath{}, false
		}
		switch p.OpType {
		case "DequantizeLinear":
			t, elemDQ, okDQ := dequantizedWeight(m, p, rank)
			if !okDQ {
				return weightPath{}, false
			}
			if elem < 0 {
				elem = elemDQ
			}
			if len(m.Consumers(p.Input[0])) > 1 {
				shared = true
			}
			return weightPath{t, append([]*onnxpb.NodeProto{p}, chain...), transposes, elem, shared}, true
		case "Cast":
			if elem < 0 {
				elem = dtype.Type(graph.IntAttr(p, "to", 0))
				if !elem.IsFloat() {
					return weightPath{}, false
				}
			}
		case "Transpose":
			if perm := graph.IntsAttr(p, "perm"); perm != nil && (len(perm) != 2 || perm[0] != 1 || perm[1] != 0) {
				return weightPath{}, false
			}
			transposes++
		case "Identity":
		default:
			return weightPath{}, false
		}
		chain = append([]*onnxpb.NodeProto{p}, chain...)
		value = p.Input[0]
	}
	return weightPath{}, false
}

// initializersAsInputs reports whether m lists its initializers as graph
// inputs: its IR version is below 4, or every initializer is an input.
func initializersAsInputs(m *graph.Model) bool {
	if v := m.Proto.IrVersion; v > 0 && v < 4 {
		return true
	}
	for _, t := range m.Proto.Graph.Initializer {
		if m.Input(t.Name) == nil {
			return false
		}
	}
	return true
}

// biasAfter returns the 1-D initializer that the only reader of y, an Add,
// adds to it, or "".
func biasAfter(m *graph.Model, y string) string {
	cs := m.Consumers(y)
	if len(cs) != 1 || cs[0].OpType != "Add" || len(cs[0].Input) != 2 || m.IsGraphOutput(y) {
		return ""
	}
	other := cs[0].Input[0]
	if other == y {
		other = cs[0].Input[1]
	}
	if t := m.Initializer(other); t != nil && len(t.Dims) == 1 {
		return other
	}
	return ""
}

// nameLayers gives each layer its module name.
func nameLayers(ls []Linear) {
	for i := range ls {
		nameLayer(&ls[i], i)
	}
	dedupeModules(ls)
}

// nameLayer gives l its module name; i numbers the layers of its kind for
// the fallback name.
func nameLayer(l *Linear, i int) {
	switch {
	case nodePathModule(l.NodeName) != "":
		l.Module, l.NameFrom = nodePathModule(l.NodeName), "node"
	case paramModule(l.Weight, "weight") != "":
		l.Module, l.NameFrom = paramModule(l.Weight, "weight"), "weight"
	case paramModule(l.Bias, "bias") != "":
		l.Module, l.NameFrom = paramModule(l.Bias, "bias"), "bias"
	case pathParamModule(l.Weight, kernelNames) != "":
		l.Module, l.NameFrom = pathParamModule(l.Weight, kernelNames), "weight"
	case pathParamModule(l.Bias, biasNames) != "":
		l.Module, l.NameFrom = pathParamModule(l.Bias, biasNames), "bias"
	case l.Role != "":
		l.Module, l.NameFrom = structureName(l.Block, l.Role), "structure"
	case l.NodeName != "":
		l.Module, l.NameFrom = strings.Trim(strings.ReplaceAll(l.NodeName, "/", "."), "."), "fallback"
	default:
		l.Module, l.NameFrom = kindOrLinear(l.Kind)+"_"+strconv.Itoa(i), "fallback"
	}
}

// dedupeModules gives layers of different weights different module names:
// their LoRA tensors are named after them.
func dedupeModules(ls []Linear) {
	weightOf := map[string]string{}
	next := map[string]int{}
	for i := range ls {
		l := &ls[i]
		base := l.Module
		for {
			w, used := weightOf[l.Module]
			if !used || w == l.Weight {
				break
			}
			next[base]++
			l.Module = base + "_" + strconv.Itoa(next[base])
		}
		weightOf[l.Module] = l.Weight
	}
}

// nodePathModule turns an exporter's node path into a module name, or
// returns "" when name is not such a path.
func nodePathModule(name string) string {
	if !strings.Contains(name, "/") {
		return ""
	}
	segs := strings.Split(strings.Trim(name, "/"), "/")
	if len(segs) < 2 {
		return ""
	}
	segs = segs[:len(segs)-1]
	for _, s := range segs {
		if s == "" {
			return ""
		}
	}
	return strings.Join(cleanSegments(segs), ".")
}

// paramModule returns the module path in a parameter name such as
// "h.0.attn.c_attn.weight_resize" (kind "weight") or "q_lin.bias" (kind
// "bias"), or "" when the name carries none.
func paramModule(name, kind string) string {
	if name == "" || strings.ContainsAny(name, ":/ ") {
		return ""
	}
	segs := strings.Split(name, ".")
	last := -1
	for i, s := range segs {
		if strings.HasPrefix(s, kind) {
			last = i
		}
	}
	if last < 1 {
		return ""
	}
	segs = segs[:last]
	if op := segs[len(segs)-1]; op == "MatMul" || op == "Gemm" {
		segs = segs[:len(segs)-1]
	}
	for _, s := range segs {
		if s == "" {
			return ""
		}
	}
	if len(segs) == 0 {
		return ""
	}
	return strings.Join(segs, ".")
}
