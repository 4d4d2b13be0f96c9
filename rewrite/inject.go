package rewrite

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// TrainingModeInput is the bool scalar graph input that switches LoRA
// dropout on. Its default initializer is false, so inference needs no
// feed; a trainer feeds true.
const TrainingModeInput = "lora_training_mode"

// minOpset is the oldest default-domain opset the branches are built for
// (Where, Less and RandomUniformLike as the composite dropout uses them),
// and minOpsetNoDropout the oldest for branches without dropout (MatMul,
// Gather, Conv, Cast, and Mul and Add with numpy broadcasting), such as
// old IR-3 exports import.
const (
	minOpset          = 9
	minOpsetNoDropout = 7
)

// InjectLoRA gives every linear layer that cfg.TargetModules selects (see
// MatchTargets, and WithModules; ExcludeModules and LayersToTransform
// narrow the choice as in HF PEFT) a LoRA
// branch, y = x·W + dropout(x)·A·B·s, with s = alpha/r, or alpha/√r with
// rsLoRA, and RankPattern and AlphaPattern taken into account. A starts
// Kaiming-uniform (or Gaussian, per cfg.InitLoRAWeights) from a seeded
// stream, B at zero, so the adapted model computes what the base does.
//
// A and B are initializers "<module>.lora_A.weight" [in, r] and
// "<module>.lora_B.weight" [r, out] of cfg.DType; the branch casts its
// input to that type and its output back where the layer's type differs.
// The model's metadata records the sites (MetadataKey), which Merge,
// ExtractAdapter and Summarize read back. InjectLoRA changes nothing when it
// fails: a layer it cannot adapt is an error naming the layer and why.
func InjectLoRA(m *graph.Model, cfg adapter.LoRAConfig, opts ...Option) ([]Site, Summary, error) {
	o, err := applyOptions(opts, loraOptions)
	if err != nil {
		return nil, Summary{}, err
	}
	if len(o.modules) > 0 {
		cfg.TargetModules = append(slices.Clone(cfg.TargetModules), adapter.ModuleTargets(o.modules...)...)
	}
	if err := checkConfig(&cfg); err != nil {
		return nil, Summary{}, err
	}
	if err := refuseQuantizedEmbeddings(m, cfg.TargetModules); err != nil {
		return nil, Summary{}, err
	}
	linears, err := FindLayers(m)
	if err != nil {
		return nil, Summary{}, err
	}
	targets, err := MatchTargets(linears, cfg.TargetModules)
	if err != nil {
		return nil, Summary{}, errorf("%w%s", err, nestedNote(m))
	}
	if targets, err = excludeModules(targets, &cfg); err != nil {
		return nil, Summary{}, err
	}
	targets, err = filterLayers(targets, &cfg)
	if err != nil {
		return nil, Summary{}, err
	}
	return inject(m, cfg, linears, targets, nil, nil, o)
}

// minOpsetFor returns the oldest opset a branch with dropout rate p is
// built for.
func minOpsetFor(p float64) int64 {
	if p > 0 {
		return minOpset
	}
	return minOpsetNoDropout
}

// dropoutNote says, for the opset error, that dropout raised the need.
func dropoutNote(p float64) string {
	if p > 0 {
		return fmt.Sprintf(" with dropout (%d without)", minOpsetNoDropout)
	}
	return ""
}

// checkConfig validates cfg for injection.
func checkConfig(cfg *adapter.LoRAConfig) error {
	if err := cfg.Validate(); err != nil {
		return errorf("%w", err)
	}
	if cfg.TensorParallelDegree > 1 {
		return errorf("tensor_parallel_degree %d: an ONNX graph holds whole, unsharded weights; merge the tensor-parallel shards of the adapter into one (degree 1) before injecting it", cfg.TensorParallelDegree)
	}
	dt, ok := branchType(cfg.DType)
	if !ok {
		return errorf("lora dtype %s: want float32, float16 or bfloat16", cfg.DType)
	}
	cfg.DType = dt // an Undefined dtype is recorded as float32
	return nil
}

// branchType returns the element type that a LoRA branch or prefix of
// config dtype d computes in: d, float32 where d is Undefined, and ok
// false where d is not a float type.
func branchType(d dtype.Type) (dtype.Type, bool) {
	d = d.Or(dtype.Float32)
	switch d {
	case dtype.Float32, dtype.Float16, dtype.BFloat16, dtype.Float64:
		return d, true
	}
	return dtype.Undefined, false
}

// adapterType returns the type that an adapter tensor taken from a graph
// value of type t is stored as: t for float16, bfloat16 and float64, and
// float32 for everything else.
func adapterType(t dtype.Type) dtype.Type {
	switch t {
	case dtype.Float16, dtype.BFloat16, dtype.Float64:
		return t
	}
	return dtype.Float32
}

// filterLayers keeps the layers whose layer index is in
// cfg.LayersToTransform, as HF PEFT does: the index is the number after a
// segment that matches one of cfg.LayersPattern, or, without a pattern,
// the first number segment that follows another segment.
func filterLayers(ls []Linear, cfg *adapter.LoRAConfig) ([]Linear, error) {
	if len(cfg.LayersToTransform) == 0 {
		return ls, nil
	}
	var res []*regexp.Regexp
	if len(cfg.LayersPattern) == 0 {
		res = append(res, regexp.MustCompile(`^(?:.*\.)?[^.]+\.(\d+)(?:\.|$)`))
	}
	for _, p := range cfg.LayersPattern {
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + p + `)\.(\d+)(?:\.|$)`)
		if err != nil {
			return nil, errorf("layers_pattern %q: %w", p, err)
		}
		res = append(res, re)
	}
	var out []Linear
	for _, l := range ls {
		for _, re := range res {
			sub := re.FindStringSubmatch(l.Module)
			if sub == nil {
				continue
			}
			idx, err := strconv.Atoi(sub[1])
			if err == nil && slices.Contains(cfg.LayersToTransform, idx) {
				out = append(out, l)
			}
			break
		}
	}
	if len(out) == 0 {
		return nil, errorf("layers_to_transform %v left none of the %d matched layers (%s)", cfg.LayersToTransform, len(ls), moduleList(ls))
	}
	return out, nil
}

// modulePlan is what injection decided for one module before it changes
// the graph.
type modulePlan struct {
	site Site
	a, b []float32 // initial values; nil with AsInputs
	mag  []float32 // DoRA's magnitude; nil for plain LoRA
	// constNorms are ‖W_j‖ of a DoRA embedding's table or int4 layer's
	// weight, which its norm takes as constants (dora_layers.go,
	// dora_nbits.go); nil elsewhere.
	constNorms []float64
	// residual is the fold that takes s·A₀·B₀ off the weight of a PiSSA or
	// OLoRA site; nil for other inits.
	residual *fold
	// loftq is a LoftQ site's quantized base (init_loftq.go), which
	// replaces its weight; nil for other inits.
	loftq *loftqStart
}

// inject adds branches to targets. weights, when not nil, gives the values
// of A and B by module (Apply); otherwise A is drawn and B is zero. keys
// maps a module to its name in cfg where the two differ.
func inject(m *graph.Model, cfg adapter.LoRAConfig, all, targets []Linear, keys map[string]string, weights map[string]adapter.LoRAWeights, o options) ([]Site, Summary, error) {
	if _, ok, err := readRecord(m); err != nil {
		return nil, Summary{}, err
	} else if ok {
		return nil, Summary{}, errorf("%s already carries LoRA branches: merge them (Merge) before injecting again", modelLabel(m))
	}
	if _, ok, err := readPrefixRecord(m); err != nil {
		return nil, Summary{}, err
	} else if ok {
		return nil, Summary{}, errorf("%s carries a prefix (%q metadata); a model takes one PEFT type: give LoRA to the base model", modelLabel(m), PrefixMetadataKey)
	}
	opset := m.Opset("")
	if need := minOpsetFor(cfg.Dropout); opset < need {
		return nil, Summary{}, errorf("%s imports default-domain opset %d; LoRA branches need opset %d or newer%s", modelLabel(m), opset, need, dropoutNote(cfg.Dropout))
	}
	// Plan every module first, so that a layer that cannot be adapted
	// fails before anything changes.
	plans := map[string]*modulePlan{}
	var newTotal int64 // bytes of A and B so far, against MaxNewBytes
	for _, l := range targets {
		if p := plans[l.Module]; p != nil {
			if p.site.Weight != l.Weight {
				return nil, Summary{}, layerErr(l, "module name %q is taken by the layer of weight %q", l.Module, p.site.Weight)
			}
			continue
		}
		key := l.Module
		if k, ok := keys[l.Module]; ok {
			key = k
		}
		p, err := planModule(m, cfg, l, key, weights, o, &newTotal)
		if err != nil {
			return nil, Summary{}, err
		}
		plans[l.Module] = p
	}
	for _, l := range targets {
		if err := checkRewirable(m, l); err != nil {
			return nil, Summary{}, err
		}
	}

	for _, p := range plans {
		if p.residual != nil {
			if err := p.residual.apply(m, -1); err != nil {
				return nil, Summary{}, err
			}
		}
	}
	// LoftQ's base replaces the weight, or the node (a module listed
	// twice is one layer: both entries take the new one).
	written := map[string]Linear{}
	for i, l := range targets {
		p := plans[l.Module]
		if p.loftq == nil {
			continue
		}
		if nl, ok := written[l.Module]; ok {
			targets[i] = nl
			continue
		}
		nl, err := writeLoftQBase(m, l, p.loftq, o.loftqOptions())
		if err != nil {
			return nil, Summary{}, err
		}
		written[l.Module], targets[i] = nl, nl
		p.site.Weight, p.site.BaseDType = nl.Weight, nl.DType
	}

	extras := trainableExtras(m, &cfg, all, targets)
	// Nothing has changed yet where this fails: DoRA takes no init from
	// the weights, which alone change them above.
	if err := checkDoRAExtras(targets, plans, extras); err != nil {
		return nil, Summary{}, err
	}
	b := newLoRAGraph(m, opset, o.asInputs, cfg.Dropout)
	original := slices.Clone(m.Proto.Graph.Node)
	built := map[string]string{} // module -> the value holding B as the graph multiplies by it
	var sites []Site
	for _, l := range targets {
		p := plans[l.Module]
		s := p.site
		s.Node, s.Op, s.Bias = l.NodeName, l.Op, l.Bias
		s.Nodes, s.Initializers = nil, nil
		b.site = &s
		bFull, ok := built[l.Module]
		if !ok {
			b.factors(p)
			bFull = b.weightSide(l)
			built[l.Module] = bFull
		}
		if l.Op == OpAttention {
			b.weightBranch(l, bFull, p.mag)
		} else {
			b.branch(l, bFull, p)
		}
		sites = append(sites, s)
	}
	b.site = nil

	// Put each branch right after its base node and the weight-side nodes
	// first, so that a sorted graph stays sorted and an unsorted one keeps
	// its order.
	nodes := make([]*onnxpb.NodeProto, 0, len(m.Proto.Graph.Node))
	nodes = append(nodes, b.front...)
	for _, n := range original {
		nodes = append(nodes, b.before[n]...)
		nodes = append(nodes, n)
		nodes = append(nodes, b.after[n]...)
	}
	m.Proto.Graph.Node = nodes
	m.Reindex()

	rec := record{Config: cfg, Sites: sites, Shared: b.shared, SharedNodes: b.sharedNodes, Trainable: extras}
	if err := writeRecord(m, &rec); err != nil {
		return nil, Summary{}, err
	}
	sum, err := summarize(m, rec)
	if err != nil {
		return nil, Summary{}, err
	}
	sum.LoftQ = loftqReportOf(plans, o.loftqOptions())
	return sites, sum, nil
}

// layerErr returns an error that names the layer l.
func layerErr(l Linear, format string, args ...any) error {
	node := l.NodeName
	if node == "" {
		node = l.Op + " -> " + l.Output
	}
	return errorf("layer %q (node %q): %w", l.Module, node, pkgerr.Format("rewrite", format, args...))
}

// siteFor works out the site of layer l from cfg, looking the module up in
// cfg under key (its name in the adapter, which Apply may have matched to
// a differently named layer).
func siteFor(cfg *adapter.LoRAConfig, key string, l Linear, asInputs bool) (Site, error) {
	if l.In <= 0 || l.Out <= 0 {
		return Site{}, layerErr(l, "weight %q is %d×%d", l.Weight, l.In, l.Out)
	}
	if err := checkRank(int64(cfg.RankFor(key))); err != nil {
		return Site{}, layerErr(l, "%w", err)
	}
	adt, ok := branchType(cfg.DType)
	if !ok {
		return Site{}, errorf("lora dtype %s: want float32, float16 or bfloat16", cfg.DType)
	}
	s := Site{
		Module: l.Module, Node: l.NodeName, Op: l.Op, Weight: l.Weight, Bias: l.Bias,
		In: l.In, Out: l.Out,
		R: cfg.RankFor(key), Alpha: cfg.AlphaFor(key), Scale: cfg.ScalingFor(key),
		A: l.Module + ".lora_A.weight", B: l.Module + ".lora_B.weight",
		DType: adt, BaseDType: l.DType, AsInputs: asInputs, Dropout: cfg.Dropout,
		Kind: l.Kind, Kernel: l.Kernel,
	}
	if err := checkKind(l, cfg.EnableFor(key) != nil); err != nil {
		return Site{}, err
	}
	if l.Kind == KindEmbedding {
		s.Dropout = 0
	}
	if cfg.UseDoRA {
		if err := checkDoRA(l, asInputs); err != nil {
			return Site{}, err
		}
		s.Magnitude = l.Module + doraSuffix
	}
	if l.Op == OpAttention && cfg.Dropout > 0 {
		return Site{}, layerErr(l, "LoRA dropout %g: the layer's q, k and v are computed inside the fused Attention node, where its branch updates the weight and cannot drop inputs; use dropout 0", cfg.Dropout)
	}
	if enable := cfg.EnableFor(key); enable != nil && l.PartWidths != nil {
		if len(enable) != len(l.PartWidths) || len(enabledParts(enable)) == 0 {
			return Site{}, layerErr(l, "enable_lora_list %v: the packed projection has %d parts (q, k, v: %v columns), and the list must enable some", enable, len(l.PartWidths), l.PartWidths)
		}
		s.Enable, s.Widths = slices.Clone(enable), slices.Clone(l.PartWidths)
	} else if enable != nil {
		n := int64(len(enable))
		k := len(enabledParts(enable))
		switch {
		case k == 0:
			return Site{}, layerErr(l, "enable_lora_list %v enables no part of the fused projection", enable)
		case l.Out%n != 0:
			return Site{}, layerErr(l, "%d output features do not split into the %d parts of enable_lora_list %v", l.Out, n, enable)
		case cfg.HeadDim <= 0 || (l.Out/n)%int64(cfg.HeadDim) != 0:
			return Site{}, layerErr(l, "parts of %d features do not split into heads of head_dim %d", l.Out/n, cfg.HeadDim)
		}
		s.Enable, s.HeadDim = slices.Clone(enable), cfg.HeadDim
	}
	return s, nil
}

// checkFactors checks an adapter module's A and B against site s.
func checkFactors(s Site, key string, l Linear, w adapter.LoRAWeights) error {
	if w.A == nil || w.B == nil {
		return layerErr(l, "adapter module %q lacks lora_A or lora_B", key)
	}
	if w.Embedding && l.Kind != KindEmbedding {
		return layerErr(l, "adapter module %q holds %s factors; the layer is %s", key, kindOfWeights(w), articled(l.Kind))
	}
	aShape, bShape := s.AShape(int64(s.R)), s.BShape(int64(s.R))
	if !slices.Equal(w.A.Shape, aShape) || !slices.Equal(w.B.Shape, bShape) {
		return layerErr(l, "adapter module %q has lora_A %v and lora_B %v; the layer (weight %q, %d×%d) needs %v and %v",
			key, w.A.Shape, w.B.Shape, l.Weight, l.In, l.Out, aShape, bShape)
	}
	if len(w.A.Data) != int(graph.NumElements(aShape)) || len(w.B.Data) != int(graph.NumElements(bShape)) {
		return layerErr(l, "adapter module %q: tensor data does not fill its shape", key)
	}
	return checkBranchOverflow(s, key, w.A.Data, w.B.Data)
}

// planModule decides the site of module l.Module: its rank, scaling, fused
// parts, names and initial values.
// It adds the bytes of A and B to *total and fails above MaxNewBytes
// before allocating them.
func planModule(m *graph.Model, cfg adapter.LoRAConfig, l Linear, key string, weights map[string]adapter.LoRAWeights, o options, total *int64) (*modulePlan, error) {
	s, err := siteFor(&cfg, key, l, o.asInputs)
	if err != nil {
		return nil, err
	}
	if !o.asInputs {
		what := "LoRA of rank " + strconv.Itoa(s.R)
		if err := newBytes(total, s.DType, what, s.AShape(int64(s.R))...); err != nil {
			return nil, layerErr(l, "%w", err)
		}
		if err := newBytes(total, s.DType, what, s.BShape(int64(s.R))...); err != nil {
			return nil, layerErr(l, "%w", err)
		}
	}
	for _, name := range []string{s.A, s.B, s.Magnitude} {
		if name != "" && m.HasName(name) {
			return nil, layerErr(l, "the model already has a value named %q", name)
		}
	}
	p := &modulePlan{site: s}
	aShape, bShape := s.AShape(int64(s.R)), s.BShape(int64(s.R))
	switch {
	case weights != nil:
		w, ok := weights[l.Module]
		if !ok {
			return nil, layerErr(l, "no adapter weights for this module")
		}
		if err := checkFactors(s, key, l, w); err != nil {
			return nil, err
		}
		p.a, p.b = w.A.Data, w.B.Data
		if p.mag, err = doraMagnitude(&cfg, key, l, w); err != nil {
			return nil, err
		}
	case cfg.InitLoRAWeights.FromWeights():
		if err := checkInitFromWeights(l, &cfg, key, o.asInputs); err != nil {
			return nil, err
		}
		if cfg.InitLoRAWeights == adapter.InitLoftQ {
			if p.loftq, err = planLoftQ(m, l, s, o.loftqOptions()); err != nil {
				return nil, err
			}
			p.a, p.b = p.loftq.a, p.loftq.b
			break
		}
		if p.a, p.b, err = initFromWeights(m, &cfg, l, s.R, s.Scale); err != nil {
			return nil, err
		}
		p.residual = &fold{l: l, module: l.Module, a: p.a, b: p.b, rk: s.R, scale: s.Scale}
	case !o.asInputs && l.Kind == KindEmbedding:
		p.a, p.b = initEmbedding(o.seed, l.Module, aShape[0], aShape[1], graph.NumElements(bShape))
	case !o.asInputs && l.Kind == KindConv:
		p.a = initA(cfg.InitLoRAWeights, o.seed, l.Module, s.In*kernelSize(s.Kernel), int64(s.R), s.R)
		p.b = make([]float32, graph.NumElements(bShape))
	case !o.asInputs:
		p.a = initA(cfg.InitLoRAWeights, o.seed, l.Module, aShape[0], aShape[1], s.R)
		p.b = make([]float32, graph.NumElements(bShape))
	}
	if s.Magnitude != "" {
		if err := planDoRA(m, l, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkRewirable reports a layer whose output is read in a way the branch
// cannot re-route: from inside a subgraph.
func checkRewirable(m *graph.Model, l Linear) error {
	for _, c := range m.Consumers(l.Output) {
		if !slices.Contains(c.Input, l.Output) {
			return layerErr(l, "its output %q is read inside a subgraph of node %q, which cannot be re-routed", l.Output, c.Name)
		}
	}
	return nil
}

// loraGraph adds the nodes and initializers of LoRA branches through a
// graph.Builder, and keeps the records the builder does not: which site
// owns each node and initializer (Site.Nodes, Site.Initializers), which
// values and nodes every site shares, and where each node goes.
//
// Nodes go right after the base node of their site, or right before it
// while ahead is set (what the base node reads: an int4 DoRA site's rows,
// dora_nbits.go), or to the front of the graph where they have none (B's
// weight side, the nodes every site shares): inject puts them there once
// every branch is built, so that a sorted graph stays sorted and an
// unsorted one keeps its order.
type loraGraph struct {
	g        *graph.Builder
	opset    int64
	asInputs bool
	dropout  float64

	site        *Site             // the site being built; nil while building what sites share
	base        *onnxpb.NodeProto // the base node of the site being built; nil puts nodes in front
	ahead       bool              // put the nodes before base, not after it
	front       []*onnxpb.NodeProto
	before      map[*onnxpb.NodeProto][]*onnxpb.NodeProto
	after       map[*onnxpb.NodeProto][]*onnxpb.NodeProto
	rows        *nbitsRows // the rows of the int4 DoRA site being built; nil elsewhere
	shared      []string   // names of shared inputs and initializers
	sharedNodes []string   // names of nodes that every site uses

	training          string // TrainingModeInput, once added
	ratio, ratioScale string // composite dropout: effective rate and 1/(1-rate)
	ratioConst        string // native dropout: the rate
}

func newLoRAGraph(m *graph.Model, opset int64, asInputs bool, dropout float64) *loraGraph {
	b := &loraGraph{opset: opset, asInputs: asInputs, dropout: dropout, before: map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}, after: map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}}
	b.g = graph.NewBuilder(m, graph.BuilderOptions{Outputs: graph.OutputsUnderNode, OnNode: b.placeNode, OnInitializer: b.ownInitializer})
	return b
}

// placeNode records where n goes and that the current site owns it.
func (b *loraGraph) placeNode(n *onnxpb.NodeProto) {
	switch {
	case b.base == nil:
		b.front = append(b.front, n)
	case b.ahead:
		b.before[b.base] = append(b.before[b.base], n)
	default:
		b.after[b.base] = append(b.after[b.base], n)
	}
	if b.site != nil {
		b.site.Nodes = append(b.site.Nodes, n.Name)
	}
}

// ownInitializer records that the current site owns t.
func (b *loraGraph) ownInitializer(t *onnxpb.TensorProto) {
	if b.site != nil {
		b.site.Initializers = append(b.site.Initializers, t.Name)
	}
}

// sharedPart runs build with no current site and no base node: what it
// adds belongs to every site and goes to the front.
func (b *loraGraph) sharedPart(build func()) {
	site, base := b.site, b.base
	b.site, b.base = nil, nil
	build()
	b.site, b.base = site, base
}

// int64s adds a 1-D int64 initializer named after name.
func (b *loraGraph) int64s(name string, v ...int64) string {
	return b.g.Initializer(name, graph.NewInt64Tensor("", []int64{int64(len(v))}, v))
}

// scalar adds a scalar initializer of element type dt named after name.
func (b *loraGraph) scalar(name string, dt dtype.Type, v float32) string {
	return b.g.Initializer(name, graph.NewFloat32Tensor("", dt, nil, []float32{v}))
}

// factors adds A and B: initializers, or graph inputs with rank-0 defaults.
// They carry fixed names and belong to the site by Site.A and Site.B.
func (b *loraGraph) factors(p *modulePlan) {
	m := b.g.Model()
	s := b.site
	dt := s.DType
	aShape, bShape := s.AShape(int64(s.R)), s.BShape(int64(s.R))
	if b.asInputs {
		aShape, bShape, aDecl, bDecl := s.inputShapes()
		m.AddInput(graph.TensorInfo(s.A, dt, aDecl))
		m.AddInput(graph.TensorInfo(s.B, dt, bDecl))
		m.AddInitializer(graph.NewFloat32Tensor(s.A, dt, aShape, make([]float32, graph.NumElements(aShape))))
		m.AddInitializer(graph.NewFloat32Tensor(s.B, dt, bShape, make([]float32, graph.NumElements(bShape))))
		return
	}
	m.AddInitializer(graph.NewFloat32Tensor(s.A, dt, aShape, p.a))
	m.AddInitializer(graph.NewFloat32Tensor(s.B, dt, bShape, p.b))
	if p.residual != nil || p.loftq != nil {
		b.initialFactors(p)
	}
}

// prefix returns the node-name prefix of l's branch: the node's path when
// it has one ("/model/layers.0/attn/q_proj"), else "/"+module.
func prefix(l Linear) string {
	if nodePathModule(l.NodeName) != "" {
		return l.NodeName[:strings.LastIndex(l.NodeName, "/")]
	}
	return "/" + l.Module
}

// weightSide adds the nodes that turn B into the matrix the branch
// multiplies by, and returns that value: B itself for plain LoRA, Bfull
// for a fused projection (see fused.go).
func (b *loraGraph) weightSide(l Linear) string {
	s := b.site
	if s.Enable == nil {
		return s.B
	}
	if s.Widths != nil {
		return b.contiguousB(l)
	}
	sb := b.g.At(prefix(l)).In("lora_B")
	n := len(s.Enable)
	idx := enabledParts(s.Enable)
	k := int64(len(idx))
	d := int64(s.HeadDim)
	heads := s.Out / int64(n) / d
	mask := make([]float32, int(k)*n)
	for e, g := range idx {
		mask[e*n+g] = 1
	}
	maskName := b.g.Initializer(s.Module+".lora_enable_mask", graph.NewFloat32Tensor("", s.DType, []int64{k, 1, int64(n), 1, 1}, mask))
	// Reshape's 0 copies the input's dim, so a rank-0 B passes too.
	v := sb.Op("Reshape", []string{s.B, b.int64s(s.Module+".lora_B.split_shape", 0, heads, k, d)})
	v = sb.Op("Transpose", []string{v}, graph.AttrInts("perm", 2, 0, 1, 3))
	v = sb.Op("Reshape", []string{v, b.int64s(s.Module+".lora_B.part_shape", 0, 0, 1, heads, d)})
	v = sb.Op("Mul", []string{v, maskName})
	v = sb.Op("Transpose", []string{v}, graph.AttrInts("perm", 0, 1, 3, 2, 4))
	return sb.Op("Flatten", []string{v}, graph.AttrInt("axis", 2))
}

// branch adds the activation side of l's branch, reading B as bFull, and
// routes l's readers to the sum.
func (b *loraGraph) branch(l Linear, bFull string, p *modulePlan) {
	s := b.site
	m := b.g.Model()
	base := l.Node
	b.base = base
	defer func() { b.base = nil }()
	pre := b.g.At(prefix(l))
	sa, sb := pre.In("lora_A"), pre.In("lora_B")

	y := base.Output[0]
	s.Output, s.BaseOutput, s.Sum = y, y, ""
	x := l.activation(base) // read live: an earlier branch may have re-routed it
	baseY := y              // the base's output as the layer's readers took it
	rows := s.Magnitude != "" && l.Quantized()
	if m.IsGraphOutput(y) || rows {
		// The graph output keeps its name and becomes the sum; the base
		// node writes a fresh value. An int4 DoRA site's base node
		// writes its rows, which the layer's output is cut from.
		suffix := "/lora_base"
		if rows {
			suffix = "/lora_rows"
		}
		s.BaseOutput = m.UniqueName(y + suffix)
		base.Output[0] = s.BaseOutput
		m.Reindex()
		baseY = s.BaseOutput
	}
	if rows {
		baseY = b.feedRows(l, pre.In("lora_magnitude"), x)
		defer func() { b.rows = nil }()
	}

	if l.TransA {
		x = sa.Op("Transpose", []string{x}, graph.AttrInts("perm", 1, 0))
	}
	if s.DType != l.DType && l.Kind != KindEmbedding {
		x = sa.Op("Cast", []string{x}, graph.AttrInt("to", int64(s.DType)))
	}
	if b.dropout > 0 && l.Kind != KindEmbedding {
		x = b.dropoutOf(pre.In("lora_dropout"), x)
	}
	h := b.down(l, sa, x)
	if !b.asInputs && s.Scale != 1 {
		sc := b.scalar(s.Module+".lora_scaling", s.DType, float32(s.Scale))
		h = pre.In("lora_scaling").Op("Mul", []string{h, sc})
	}
	d := b.up(l, sb, h, bFull)
	if s.DType != l.DType {
		d = sb.Op("Cast", []string{d}, graph.AttrInt("to", int64(l.DType)))
	}
	if s.Magnitude != "" {
		d = b.doraDelta(l, pre, bFull, baseY, d, p)
	}
	if s.BaseOutput != s.Output {
		pre.In("lora_add").NodeTo("", "Add", []string{baseY, d}, []string{y})
		s.Sum = y
		return
	}
	sum := pre.In("lora_add").Node("", "Add", []string{y, d}, 1)
	m.ReplaceUses(y, sum.Output[0], append(siteReaders(m, s, y), sum)...)
	s.Sum = sum.Output[0]
}

// trainingMode returns TrainingModeInput, adding it on first use.
func (b *loraGraph) trainingMode() string {
	if b.training == "" {
		b.sharedPart(func() {
			b.training = b.g.InputWithDefault(TrainingModeInput, &onnxpb.TensorProto{DataType: int32(dtype.Bool), RawData: []byte{0}})
		})
		b.shared = append(b.shared, b.training)
	}
	return b.training
}

// sharedScalar adds a float scalar initializer that every site reads.
func (b *loraGraph) sharedScalar(name string, dt dtype.Type, v float32) string {
	var sc string
	b.sharedPart(func() { sc = b.scalar(name, dt, v) })
	b.shared = append(b.shared, sc)
	return sc
}

// dropoutOf adds inverted dropout of rate b.dropout on x, in scope d,
// active only when TrainingModeInput is true. From opset 12 it is a
// Dropout node with the training_mode input (its mask is an output too,
// for the backward pass); before, Dropout has no training mode, and the
// same computation is built from RandomUniformLike, Less, Not, Cast and
// Mul.
func (b *loraGraph) dropoutOf(d *graph.Builder, x string) string {
	s := b.site
	training := b.trainingMode()
	if b.opset >= 12 {
		if b.ratioConst == "" {
			b.ratioConst = b.sharedScalar("lora_dropout_ratio", dtype.Float32, float32(b.dropout))
		}
		// The mask output is for the backward pass.
		return d.Node("", "Dropout", []string{x, b.ratioConst, training}, 2).Output[0]
	}
	if b.ratio == "" {
		rate := b.sharedScalar("lora_dropout_ratio", s.DType, float32(b.dropout))
		zero := b.sharedScalar("lora_dropout_zero", s.DType, 0)
		one := b.sharedScalar("lora_dropout_one", s.DType, 1)
		b.sharedPart(func() {
			sd := b.g.At("/lora_dropout")
			b.ratio = sd.Op("Where", []string{training, rate, zero})
			keep := sd.Op("Sub", []string{one, b.ratio})
			b.ratioScale = sd.Op("Div", []string{one, keep})
			for _, v := range []string{b.ratio, keep, b.ratioScale} {
				b.sharedNodes = append(b.sharedNodes, b.g.Model().Producer(v).Name)
			}
		})
	}
	u := d.Op("RandomUniformLike", []string{x}, graph.AttrInt("dtype", int64(s.DType)))
	drop := d.Op("Less", []string{u, b.ratio})
	keep := d.Op("Not", []string{drop})
	keepF := d.Op("Cast", []string{keep}, graph.AttrInt("to", int64(s.DType)))
	v := d.Op("Mul", []string{x, keepF})
	return d.Op("Mul", []string{v, b.ratioScale})
}
