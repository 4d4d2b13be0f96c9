package autodiff

import (
	"errors"
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/option"
	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// GradPrefix starts the name of each gradient output: the gradient of
// parameter p is the output GradPrefix+p.
const GradPrefix = "grad."

// GradName returns the name of the output that holds param's gradient.
func GradName(param string) string { return GradPrefix + param }

// Option changes how Build works.
type Option func(*config) error

type config struct {
	outputs     []string
	noRecompute bool
	products    bool
	int4        bool // the int4 products alone (WithRecomputeInt4Products)
	layers      bool
	probe       ShapeProbe
}

// WithRecomputeProducts also recomputes, in the backward pass, the
// products of an activation with a frozen matrix (MatMul or Gemm with a
// constant 2-D weight, or MatMulNBits with a frozen packed one) that the
// backward pass reads, with the cheap nodes that lead to them: for a
// LLaMA MLP, its gate and up projections. Less
// memory again, for one more matrix product per recomputed value. Off by
// default; it needs WithRecompute on.
func WithRecomputeProducts(on bool) Option {
	return func(c *config) error {
		c.products = on
		return nil
	}
}

// WithRecomputeInt4Products recomputes, in the backward pass, the
// products of activations with frozen int4 weights (com.microsoft
// MatMulNBits) that it reads, as WithRecomputeProducts does, but keeps
// the float products: on an int4 base the frozen weights are small, and
// the activations the backward pass keeps are most of a step's memory
// (for a LLaMA MLP, its gate and up projections). Off by default; it
// needs WithRecompute on. package train turns it on for an int4 base
// (train.ProductsAuto).
func WithRecomputeInt4Products(on bool) Option {
	return func(c *config) error {
		c.int4 = on
		return nil
	}
}

// WithRecomputeLayers checkpoints whole decoder layers: the backward pass
// computes again everything a layer made from the value that entered it
// (the nodes named under "layers.N/", attention and MLP, all but random
// ops), and only the values that pass from layer to layer are kept from
// the forward pass. The least memory, for about one more forward pass of
// time. Off by default; it needs WithRecompute on.
func WithRecomputeLayers(on bool) Option {
	return func(c *config) error {
		c.layers = on
		return nil
	}
}

// WithRecompute turns the recomputation of cheap forward values in the
// backward pass on (the default) or off. On, a value that the backward
// pass reads and that a cheap element-wise node makes from values the
// backward pass keeps anyway is made again there instead of being kept
// from the forward pass: less memory for the same gradients, bit for bit,
// at the cost of those element-wise ops run twice.
func WithRecompute(on bool) Option {
	return func(c *config) error {
		c.noRecompute = !on
		return nil
	}
}

// WithOutputs keeps forward values as outputs of the training model, after
// the loss and the gradients: logits for evaluation, say. Each must be a
// value of the model.
func WithOutputs(names ...string) Option {
	return func(c *config) error {
		for _, n := range names {
			if n == "" {
				return errorf("WithOutputs: empty value name")
			}
		}
		c.outputs = append(c.outputs, names...)
		return nil
	}
}

// Build returns a new model that computes loss and its gradient with
// respect to each of params. m is not changed.
//
// loss names a floating-point value of m; a loss that is not a scalar is
// summed, as if its gradient were seeded with ones. Each param names a
// floating-point initializer or graph input of m. In the result:
//   - each param is a graph input without a default (its initializer is
//     removed); frozen weights stay initializers;
//   - the outputs are loss, then GradName(p) for each param in order, then
//     the values asked for with WithOutputs;
//   - only the nodes that these outputs need are kept;
//   - fused com.microsoft ops on a gradient path are replaced by standard
//     ops where no rule handles them directly.
//
// Values that m's metadata lists under StopGradientKey are constants to
// the gradient, as torch's detach.
//
// A param that the loss does not depend on gets a zero gradient. Build
// fails with an error naming the op type and the node when a node on a
// gradient path has no rule.
func Build(m *graph.Model, loss string, params []string, opts ...Option) (*graph.Model, error) {
	var cfg config
	if err := option.Apply(&cfg, opts); err != nil {
		return nil, err
	}
	if len(params) == 0 {
		return nil, errorf("no parameters to differentiate")
	}
	out := m.Clone()
	// Some exports do not validate (GPT-2 from PyTorch 1.6 defines a few
	// constants twice) and still run; the result is held to the input's
	// standard.
	b := &gradientPass{m: out, input: m, loss: loss, params: params, cfg: cfg, validate: m.Validate() == nil}
	if err := b.run(); err != nil {
		return nil, err
	}
	return out, nil
}

// errorf returns an error prefixed with the package name, once (see
// package pkgerr): operands are wrapped with %w.
func errorf(format string, args ...any) error {
	return pkgerr.Errorf("autodiff", format, args...)
}

// gradientPass is one run of Build: the training graph being made, the
// forward nodes it keeps, and what it knows about them.
type gradientPass struct {
	m      *graph.Model
	input  *graph.Model // the model Build was given, for a probe run
	loss   string
	params []string
	cfg    config
	// validate checks the result with graph.Validate.
	validate bool
	// probed are the value infos a probe run gave, once it has run.
	probed []*onnxpb.ValueInfoProto

	opset int64
	nodes []*onnxpb.NodeProto // kept forward nodes, sorted
	inf   *inferer
	rg    map[string]bool // requires grad: depends on a param through differentiable slots
}

func (b *gradientPass) run() error {
	if err := b.setupParams(); err != nil {
		return err
	}
	b.opset = b.m.Opset("")
	if b.opset == 0 {
		b.opset = 17
		b.m.SetOpset("", b.opset)
	}
	if b.opset < 11 {
		return errorf("default-domain opset %d is too old: gradients need opset 11 or newer", b.opset)
	}
	if err := b.analyze(); err != nil {
		return err
	}
	through := b.straightThrough()
	changed, err := b.decompose()
	if err != nil {
		return err
	}
	changed = changed || through
	if changed {
		if err := b.analyze(); err != nil {
			return err
		}
	}
	if dt := b.inf.get(b.loss).elem; dt != dtype.Undefined && !dt.IsFloat() {
		return errorf("loss %q is %s, not a floating-point value", b.loss, dt)
	}
	if err := b.checkRules(); err != nil {
		return err
	}
	grads, err := b.backward()
	if err != nil {
		return err
	}
	if !b.cfg.noRecompute {
		b.recompute(b.cfg.products, b.cfg.int4, b.cfg.layers)
	}
	b.setOutputs(grads)
	b.prune()
	if err := b.m.SortNodes(); err != nil {
		return errorf("%w", err)
	}
	if b.validate {
		if err := b.m.Validate(); err != nil {
			return errorf("training graph is invalid: %w", err)
		}
	}
	return nil
}

// setupParams makes each param a graph input.
func (b *gradientPass) setupParams() error {
	seen := map[string]bool{}
	for _, p := range b.params {
		if seen[p] {
			return errorf("parameter %q is listed twice", p)
		}
		seen[p] = true
		if b.m.HasName(GradName(p)) {
			return errorf("the model already has a value %q, the name of the gradient of %q", GradName(p), p)
		}
		t := b.m.Initializer(p)
		in := b.m.Input(p)
		switch {
		case t != nil:
			if !graph.TypeOf(t).IsFloat() {
				return errorf("parameter %q is %s, not a floating-point tensor", p, graph.TypeOf(t))
			}
			b.m.RemoveInitializer(p)
			if in == nil {
				b.m.AddInput(graph.TensorInfo(p, graph.TypeOf(t), t.Dims))
			}
		case in != nil:
			if dt, _, _ := graph.ValueShape(in); dt != dtype.Undefined && !dt.IsFloat() {
				return errorf("parameter %q is %s, not a floating-point tensor", p, dt)
			}
		default:
			return errorf("parameter %q is neither an initializer nor a graph input", p)
		}
	}
	return nil
}

// analyze sorts the nodes the outputs need, infers types and shapes, and
// finds the values that depend on a param.
func (b *gradientPass) analyze() error {
	b.m.Reindex()
	order, err := b.m.TopoOrder()
	if err != nil {
		return errorf("%w", err)
	}
	targets := append([]string{b.loss}, b.cfg.outputs...)
	for _, t := range targets {
		if b.m.Producer(t) == nil && b.m.Input(t) == nil && b.m.Initializer(t) == nil {
			return errorf("%q is not a value of the model", t)
		}
	}
	// Keep the ancestors of the targets.
	want := map[string]bool{}
	for _, t := range targets {
		want[t] = true
	}
	var kept []*onnxpb.NodeProto
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		use := false
		for _, o := range n.Output {
			if want[o] {
				use = true
			}
		}
		if !use {
			continue
		}
		kept = append(kept, n)
		for _, in := range graph.NodeInputs(n) {
			want[in] = true
		}
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	b.nodes = kept
	b.inf = newInferer(b.m)
	b.inf.extra = b.probed
	b.inf.run(kept)
	if b.probed == nil && len(b.inf.undescribed) > 0 {
		probed, err := b.probeUndescribed(b.inf.undescribed)
		if err != nil {
			return err
		}
		if len(probed) > 0 {
			b.probed = probed
			b.inf = newInferer(b.m)
			b.inf.extra = probed
			b.inf.run(kept)
		}
	}

	b.rg = map[string]bool{}
	for _, p := range b.params {
		b.rg[p] = true
	}
	stops := stopGradients(b.m)
	for _, n := range kept {
		r, hasRule := ruleFor(n)
		flows := false
		for i, in := range n.Input {
			if in != "" && b.rg[in] && (!hasRule || r.differentiable(i)) {
				flows = true
			}
		}
		if !flows {
			continue
		}
		for _, o := range n.Output {
			if dt := b.inf.get(o).elem; o != "" && !stops[o] && (dt == dtype.Undefined || dt.IsFloat()) {
				b.rg[o] = true
			}
		}
	}
	return nil
}

// decompose replaces the fused ops on gradient paths that have a
// decomposition and no rule. It reports whether it changed the graph.
func (b *gradientPass) decompose() (bool, error) {
	changed := false
	e := newEmitter(b.m, b.inf, b.opset)
	for _, n := range b.nodes {
		r := lookup(n)
		if r == nil || r.grad != nil || r.decompose == nil || !b.onPath(n) {
			continue
		}
		e.scope = n.Name
		if e.scope == "" {
			e.scope = n.OpType
		}
		b.m.RemoveNodes(n)
		r.decompose(e, n)
		if e.err != nil {
			return false, errorf("cannot decompose %s node %s, which blocks the gradient of %s: %w", opName(n), label(n), b.blocked(n), e.err)
		}
		changed = true
	}
	return changed, nil
}

// onPath reports whether a param reaches one of n's outputs.
func (b *gradientPass) onPath(n *onnxpb.NodeProto) bool {
	for _, o := range n.Output {
		if b.rg[o] {
			return true
		}
	}
	return false
}

// checkRules walks back from the loss along the gradient paths and fails
// on the first node whose op has no rule, before anything is emitted.
func (b *gradientPass) checkRules() error {
	need := map[string]bool{b.loss: true}
	for i := len(b.nodes) - 1; i >= 0; i-- {
		n := b.nodes[i]
		flows := false
		for _, o := range n.Output {
			flows = flows || (need[o] && b.rg[o])
		}
		if !flows {
			continue
		}
		r, ok := ruleFor(n)
		if !ok {
			return errorf("%w for op %s of node %s, which blocks the gradient of %s", ErrNoRule, opName(n), label(n), b.blocked(n))
		}
		for j, in := range n.Input {
			if in != "" && b.rg[in] && r.differentiable(j) {
				need[in] = true
			}
		}
	}
	return nil
}

// blocked lists the params that reach an input of n, for an error about a
// node that no gradient can pass: "parameters a, b and 3 more".
func (b *gradientPass) blocked(n *onnxpb.NodeProto) string {
	reach := map[string]map[string]bool{}
	for _, p := range b.params {
		reach[p] = map[string]bool{p: true}
	}
	var found map[string]bool
	for _, m := range b.nodes {
		r, hasRule := ruleFor(m)
		var from map[string]bool
		for i, in := range m.Input {
			if in == "" || reach[in] == nil || (hasRule && !r.differentiable(i) && m != n) {
				continue
			}
			if from == nil {
				from = map[string]bool{}
			}
			for p := range reach[in] {
				from[p] = true
			}
		}
		if m == n {
			found = from
			break
		}
		for _, o := range m.Output {
			if o != "" && from != nil && b.rg[o] {
				reach[o] = from
			}
		}
	}
	var names []string
	for _, p := range b.params {
		if found[p] {
			names = append(names, p)
		}
	}
	switch {
	case len(names) == 0:
		return "no parameter"
	case len(names) == 1:
		return "parameter " + names[0]
	case len(names) <= 4:
		return "parameters " + strings.Join(names, ", ")
	}
	return fmt.Sprintf("parameters %s and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// backward emits the gradient nodes and returns the gradient of each
// param ("" for none).
func (b *gradientPass) backward() (map[string]string, error) {
	e := newEmitter(b.m, b.inf, b.opset)
	partials := map[string][]string{}
	if b.rg[b.loss] {
		dt := b.inf.get(b.loss).elem
		if dt == dtype.Undefined {
			return nil, errorf("element type of loss %q is unknown", b.loss)
		}
		e.scope = "autodiff/seed"
		seed := e.scalar(1, dt)
		if s := b.inf.get(b.loss).shape; !s.ok || s.rank() > 0 {
			seed = e.op("Expand", []string{seed, e.shapeOf(b.loss)})
			e.inf.setShape(seed, s)
		}
		partials[b.loss] = []string{seed}
	}
	for i := len(b.nodes) - 1; i >= 0; i-- {
		n := b.nodes[i]
		dy := make([]string, len(n.Output))
		any := false
		for j, o := range n.Output {
			if o == "" || len(partials[o]) == 0 {
				continue
			}
			e.scope = "grad/" + o
			dy[j] = e.sum(partials[o])
			// A gradient has its value's shape; say so where inference
			// lost track.
			if fwd := b.inf.get(o); fwd.shape.ok && !sameShape(b.inf.get(dy[j]).shape, fwd.shape) && b.m.Initializer(dy[j]) == nil {
				b.inf.record(dy[j], tinfo{elem: fwd.elem, shape: fwd.shape})
			}
			any = true
		}
		if !any {
			continue
		}
		r, ok := ruleFor(n)
		if !ok {
			return nil, errorf("%w for op %s of node %s", ErrNoRule, opName(n), label(n))
		}
		need := make([]bool, len(n.Input))
		anyNeed := false
		for j, in := range n.Input {
			need[j] = in != "" && b.rg[in] && r.differentiable(j)
			anyNeed = anyNeed || need[j]
		}
		if !anyNeed {
			continue
		}
		e.scope = "grad/" + nodeScope(n)
		dx := r.grad(e, n, dy, need)
		if e.err != nil {
			return nil, errorf("gradient of %s node %s: %w", opName(n), label(n), e.err)
		}
		for j, g := range dx {
			if j < len(need) && need[j] && g != "" {
				partials[n.Input[j]] = append(partials[n.Input[j]], g)
			}
		}
	}
	grads := map[string]string{}
	for _, p := range b.params {
		if len(partials[p]) > 0 {
			e.scope = "grad/" + p
			grads[p] = e.sum(partials[p])
		}
	}
	return grads, nil
}

func opName(n *onnxpb.NodeProto) string {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return n.Domain + ":" + n.OpType
	}
	return n.OpType
}

func label(n *onnxpb.NodeProto) string {
	if n.Name != "" {
		return fmt.Sprintf("%q", n.Name)
	}
	if len(n.Output) > 0 {
		return fmt.Sprintf("(unnamed, output %q)", n.Output[0])
	}
	return "(unnamed)"
}

func nodeScope(n *onnxpb.NodeProto) string {
	if n.Name != "" {
		return n.Name
	}
	if len(n.Output) > 0 {
		return n.Output[0]
	}
	return n.OpType
}

// setOutputs replaces the graph outputs with the loss, the gradients and
// the extra outputs.
func (b *gradientPass) setOutputs(grads map[string]string) {
	g := b.m.Graph()
	g.Output = nil
	e := newEmitter(b.m, b.inf, b.opset)
	g.Output = append(g.Output, b.valueInfo(b.loss, b.loss))
	for _, p := range b.params {
		name := GradName(p)
		e.scope = name
		src := grads[p]
		if src == "" {
			src = e.zerosLike(p, b.inf.get(p).elem)
		}
		e.b.At(name).NodeTo("", "Identity", []string{src}, []string{name})
		g.Output = append(g.Output, b.valueInfo(name, p))
	}
	for _, o := range b.cfg.outputs {
		g.Output = append(g.Output, b.valueInfo(o, o))
	}
}

// valueInfo describes output name with what inference knows of like.
func (b *gradientPass) valueInfo(name, like string) *onnxpb.ValueInfoProto {
	t := b.inf.get(like)
	if !t.shape.ok {
		v := graph.TensorInfo(name, t.elem, nil)
		v.Type.GetTensorType().Shape = nil
		return v
	}
	dims := make([]graph.Dim, len(t.shape.dims))
	for i, d := range t.shape.dims {
		switch {
		case d.static():
			dims[i] = graph.DimValue(d.v)
		case len(d.sym) > 1 && d.sym[0] == '$':
			dims[i] = graph.DimParam(d.sym[1:])
		}
	}
	return graph.SymbolicTensorInfo(name, t.elem, dims)
}

// prune drops the nodes no output needs, the initializers nothing reads
// and the value infos of values that are gone.
func (b *gradientPass) prune() {
	b.m.Reindex()
	g := b.m.Graph()
	want := map[string]bool{}
	for _, o := range g.Output {
		want[o.Name] = true
	}
	order, err := b.m.TopoOrder()
	if err != nil {
		return
	}
	var drop []*onnxpb.NodeProto
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		use := false
		for _, o := range n.Output {
			use = use || want[o]
		}
		if !use {
			drop = append(drop, n)
			continue
		}
		for _, in := range graph.NodeInputs(n) {
			want[in] = true
		}
	}
	b.m.RemoveNodes(drop...)
	var unused []string
	for _, t := range g.Initializer {
		if !want[t.Name] && b.m.Input(t.Name) == nil {
			unused = append(unused, t.Name)
		}
	}
	for _, name := range unused {
		b.m.RemoveInitializer(name)
	}
	defined := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			defined[o] = true
		}
	}
	vi := g.ValueInfo[:0]
	for _, v := range g.ValueInfo {
		if defined[v.Name] {
			vi = append(vi, v)
		}
	}
	g.ValueInfo = vi
	b.m.Reindex()
}

// ErrNoRule is wrapped by Build's error when a node on a gradient path has
// an op that no rule differentiates.
var ErrNoRule = errors.New("no gradient rule")
