package graph

import (
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Builder adds nodes, constants and initializers to a Model, each under a
// name that no value, node or initializer of the model uses yet.
//
// A Builder is a scope: a node of op type Op that it adds is named
// scope+"/"+Op ("/model/layers.0/attn/MatMul"), or that with _1, _2, …
// where the name is taken. In and At return builders for other scopes
// that share all the rest: the model, the options and the constants made
// so far. Builders are cheap; make one per scope as needed.
//
// The builder appends the nodes it adds to the graph. A caller that wants
// them elsewhere collects them with BuilderOptions.OnNode and reorders the
// graph afterwards.
type Builder struct {
	b     *building
	scope string
}

// building is what the builders of one NewBuilder share.
type building struct {
	m      *Model
	opts   BuilderOptions
	consts map[string]string // constant content -> the value that holds it
}

// OutputNaming says how a Builder names the outputs of the nodes it adds.
// Every style makes the name unique.
type OutputNaming int

const (
	// OutputsAfterNode names output i of node N "N_output_i"
	// ("/model/Add_1_output_0"), as PyTorch's exporter does.
	OutputsAfterNode OutputNaming = iota
	// OutputsUnderNode names output i of node N "N/output_i"
	// ("/layer/proj/lora_A/MatMul/output_0").
	OutputsUnderNode
	// OutputsAfterOp names output i after the node's name before it was
	// made unique, "S/Op_output_i", made unique on its own: the second
	// Add of scope S writes "S/Add_output_0_1".
	OutputsAfterOp
)

// BuilderOptions say how a Builder names what it adds and whom it tells.
// The zero value names outputs as PyTorch's exporter does and makes
// constants initializers.
type BuilderOptions struct {
	// Scope is the scope of the builder that NewBuilder returns: "" or a
	// path such as "/model" or "lora/q_proj".
	Scope string
	// Outputs is how node outputs are named.
	Outputs OutputNaming
	// NodeName, when set, returns the name of a node of op type op added
	// in scope, before it is made unique, in place of scope+"/"+op.
	NodeName func(scope, op string) string
	// ConstantNodes makes the constants of Constant, Int64s, Int64,
	// Scalar and Floats Constant nodes of the scope Scope, as exporters
	// emit them, rather than initializers.
	ConstantNodes bool
	// ConstantPrefix starts the names of constant initializers
	// ("autodiff/const/").
	ConstantPrefix string
	// OnNode, when set, is called with every node the builder adds, once
	// it is in the model.
	OnNode func(*onnxpb.NodeProto)
	// OnInitializer, when set, is called with every initializer the
	// builder adds, constants and input defaults included, once it is in
	// the model.
	OnInitializer func(*onnxpb.TensorProto)
}

// NewBuilder returns a builder that adds to m, in scope opts.Scope.
func NewBuilder(m *Model, opts BuilderOptions) *Builder {
	return &Builder{b: &building{m: m, opts: opts, consts: map[string]string{}}, scope: opts.Scope}
}

// Model returns the model the builder adds to.
func (b *Builder) Model() *Model { return b.b.m }

// Scope returns the builder's scope.
func (b *Builder) Scope() string { return b.scope }

// In returns a builder for the scope name inside b's: scope+"/"+name.
func (b *Builder) In(name string) *Builder {
	return &Builder{b: b.b, scope: b.scope + "/" + name}
}

// At returns a builder for scope, as given, that shares the rest with b.
func (b *Builder) At(scope string) *Builder {
	return &Builder{b: b.b, scope: scope}
}

// Op adds a node of the default domain with one output, and returns the
// output's name.
func (b *Builder) Op(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return b.Node("", op, inputs, 1, attrs...).Output[0]
}

// Node adds a node of op type op in domain ("" for the default domain)
// that reads inputs and writes nout outputs, named as the options say,
// and returns it.
func (b *Builder) Node(domain, op string, inputs []string, nout int, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	base := b.nodeName(op)
	name := b.b.m.UniqueName(base)
	outs := make([]string, nout)
	for i := range outs {
		var out string
		switch b.b.opts.Outputs {
		case OutputsUnderNode:
			out = name + "/output_"
		case OutputsAfterOp:
			out = base + "_output_"
		default:
			out = name + "_output_"
		}
		outs[i] = b.b.m.UniqueName(out + strconv.Itoa(i))
	}
	return b.add(&onnxpb.NodeProto{OpType: op, Domain: domain, Name: name, Input: inputs, Output: outs, Attribute: attrs})
}

// NodeTo adds a node of op type op in domain that reads inputs and writes
// outputs, named exactly so, and returns it. The caller makes sure that
// nothing else writes those values ("" leaves an optional output out).
func (b *Builder) NodeTo(domain, op string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	name := b.b.m.UniqueName(b.nodeName(op))
	return b.add(&onnxpb.NodeProto{OpType: op, Domain: domain, Name: name, Input: inputs, Output: outputs, Attribute: attrs})
}

// nodeName returns the name of a node of op type op in b's scope, before
// it is made unique.
func (b *Builder) nodeName(op string) string {
	if b.b.opts.NodeName != nil {
		return b.b.opts.NodeName(b.scope, op)
	}
	return b.scope + "/" + op
}

// add puts n in the model and tells OnNode.
func (b *Builder) add(n *onnxpb.NodeProto) *onnxpb.NodeProto {
	b.b.m.AddNode(n)
	if b.b.opts.OnNode != nil {
		b.b.opts.OnNode(n)
	}
	return n
}

// KeepOutput returns the name of output i of n, an existing node, first
// naming it after base (made unique) where n does not write it yet: for
// an optional output, such as Dropout's mask, that a later node needs.
// OnNode is not called: n is not a new node.
func (b *Builder) KeepOutput(n *onnxpb.NodeProto, i int, base string) string {
	if i < len(n.Output) && n.Output[i] != "" {
		return n.Output[i]
	}
	m := b.b.m
	name := m.UniqueName(base)
	ix := m.index()
	ix.removeNode(n)
	for len(n.Output) <= i {
		n.Output = append(n.Output, "")
	}
	n.Output[i] = name
	ix.addNode(n)
	return name
}

// Initializer adds t as an initializer named after name (made unique),
// and returns the name. Initializers that Initializer adds are not shared:
// see Constant for that.
func (b *Builder) Initializer(name string, t *onnxpb.TensorProto) string {
	t.Name = b.b.m.UniqueName(name)
	b.addInitializer(t)
	return t.Name
}

// addInitializer puts t in the model and tells OnInitializer.
func (b *Builder) addInitializer(t *onnxpb.TensorProto) {
	b.b.m.AddInitializer(t)
	if b.b.opts.OnInitializer != nil {
		b.b.opts.OnInitializer(t)
	}
}

// InputWithDefault adds a graph input named after name (made unique), of
// t's element type and shape, with t as the initializer that it takes
// when it is not fed, and returns the input's name.
func (b *Builder) InputWithDefault(name string, t *onnxpb.TensorProto) string {
	m := b.b.m
	t.Name = m.UniqueName(name)
	m.AddInput(TensorInfo(t.Name, TypeOf(t), t.Dims))
	b.addInitializer(t)
	return t.Name
}

// Constant returns a value that holds t. The first time a tensor of t's
// element type, shape and contents is asked for, it is added: as an
// initializer named ConstantPrefix+name (made unique), or, with
// ConstantNodes, as a Constant node of the builder's root scope, whose
// name then says nothing of name. Later requests, from any scope, get
// the same value. Constant keeps t; the caller must not change it.
func (b *Builder) Constant(name string, t *onnxpb.TensorProto) string {
	key, ok := contentKey(t)
	if ok {
		if v, seen := b.b.consts[key]; seen {
			return v
		}
	}
	var v string
	if b.b.opts.ConstantNodes {
		root := b.At(b.b.opts.Scope)
		v = root.Op("Constant", nil, AttrTensor("value", t))
	} else {
		t.Name = b.b.m.UniqueName(b.b.opts.ConstantPrefix + name)
		b.addInitializer(t)
		v = t.Name
	}
	if ok {
		b.b.consts[key] = v
	}
	return v
}

// contentKey identifies t by element type, shape and data; ok is false
// for a tensor whose data lies outside the model or in a field that
// typedFieldBytes does not read (strings), which is not shared.
func contentKey(t *onnxpb.TensorProto) (key string, ok bool) {
	if t.DataLocation == onnxpb.TensorProto_EXTERNAL {
		return "", false
	}
	data := t.RawData
	if len(data) == 0 {
		data = typedFieldBytes(t)
	}
	if len(data) == 0 && (len(t.Dims) == 0 || NumElements(t.Dims) > 0) {
		return "", false
	}
	var sb strings.Builder
	sb.WriteString(strconv.Itoa(int(t.DataType)))
	for _, d := range t.Dims {
		sb.WriteByte(',')
		sb.WriteString(strconv.FormatInt(d, 10))
	}
	sb.WriteByte(':')
	sb.Write(data)
	return sb.String(), true
}

// Int64s returns a 1-D int64 constant holding v, named i64_1_2 for
// Int64s(1, 2).
func (b *Builder) Int64s(v ...int64) string {
	name := "i64"
	for _, x := range v {
		name += "_" + strconv.FormatInt(x, 10)
	}
	return b.Constant(name, NewInt64Tensor("", []int64{int64(len(v))}, v))
}

// Int64 returns a rank-0 int64 constant holding v, named i64s_5 for
// Int64(5).
func (b *Builder) Int64(v int64) string {
	return b.Constant("i64s_"+strconv.FormatInt(v, 10), NewInt64Tensor("", nil, []int64{v}))
}

// Scalar returns a rank-0 constant of float type dt holding v, named
// float32/0.5 for Scalar(dtype.Float32, 0.5). A float64 constant holds v
// exactly; the other types round it to nearest even.
func (b *Builder) Scalar(dt dtype.Type, v float64) string {
	return b.Constant(dt.String()+"/"+strconv.FormatFloat(v, 'g', -1, 64), NewFloatTensor("", dt, nil, []float64{v}))
}

// Floats returns a constant of float type dt and shape dims holding
// values, named after its type and shape (float32_2x3).
func (b *Builder) Floats(dt dtype.Type, dims []int64, values []float64) string {
	parts := make([]string, len(dims))
	for i, d := range dims {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return b.Constant(dt.String()+"_"+strings.Join(parts, "x"), NewFloatTensor("", dt, dims, values))
}
