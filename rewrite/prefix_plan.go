package rewrite

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// minPrefixOpset is the oldest default-domain opset the prefix nodes are
// built for (Expand, and Where in the composite dropout).
const minPrefixOpset = 9

// pastInputs describes the KV-cache inputs of a decoder.
type pastInputs struct {
	stacked bool
	names   []string // layer order: key, value per layer; or one stacked per layer
	layers  int
	kvHeads int64 // -1 where the graph leaves it dynamic
	headDim int64 // -1 likewise
	elem    dtype.Type
}

// seqAxis returns the axis of the past length.
func (p pastInputs) seqAxis() int64 {
	if p.stacked {
		return 3
	}
	return 2
}

// prefixPlan is everything injection decides before it changes the graph.
type prefixPlan struct {
	cfg       adapter.PrefixConfig // completed from the graph
	past      pastInputs
	present   []string // per past input, the output to slice, or ""
	paramType dtype.Type
	batchFrom string // input whose first dim is the batch
	mask      string // attention_mask input, or ""
	maskType  dtype.Type
	positions string // position_ids input, or ""
	posType   dtype.Type
	replace   bool
	opset     int64
}

// planPrefix reads the graph and completes cfg; see InjectPrefix.
func planPrefix(m *graph.Model, cfg adapter.PrefixConfig, o options) (*prefixPlan, error) {
	past, err := findPast(m)
	if err != nil {
		return nil, err
	}
	opset := m.Opset("")
	if opset < minPrefixOpset {
		return nil, errorf("%s imports default-domain opset %d; prefix injection needs %d or later", modelLabel(m), opset, minPrefixOpset)
	}
	hidden := embeddingWidth(m)
	cfg, err = resolvePrefixConfig(m, cfg, past, hidden, o.headDim)
	if err != nil {
		return nil, err
	}
	paramType, ok := branchType(cfg.DType)
	ok = ok && paramType != dtype.Float64 // no float64 KV caches to cast to
	if !ok {
		return nil, errorf("prefix dtype %s: want float32, float16 or bfloat16", cfg.DType)
	}
	cfg.DType = paramType // an Undefined dtype is recorded as float32
	if paramType != past.elem && (paramType == dtype.BFloat16 || past.elem == dtype.BFloat16) && opset < 13 {
		return nil, errorf("%s imports default-domain opset %d; casting the prefix from %s to the cache's %s needs opset 13", modelLabel(m), opset, paramType, past.elem)
	}
	p := &prefixPlan{cfg: cfg, past: past, paramType: paramType, replace: o.replacePast, opset: opset}
	roles := modelPlan(m)
	role := func(r feed.Role) string {
		if s, ok := roles.First(r); ok && fedInput(m, s.Name) {
			return s.Name
		}
		return ""
	}
	for _, name := range []string{role(feed.TokenIDs), role(feed.AttentionMask), "inputs_embeds"} {
		if name != "" && fedInput(m, name) {
			p.batchFrom = name
			break
		}
	}
	if p.batchFrom == "" {
		return nil, errorf("%s has no input_ids, attention_mask or inputs_embeds input to take the batch size from", modelLabel(m))
	}
	if name := role(feed.AttentionMask); name != "" {
		p.mask = name
		dt, dims, ok := graph.ValueShape(m.Input(p.mask))
		if ok && len(dims) != 2 {
			return nil, errorf("%s: %s has rank %d; prefix injection pads a [batch, length] mask only", modelLabel(m), name, len(dims))
		}
		if _, err := onesTensor(dt, nil); err != nil {
			return nil, errorf("%s: %s: %w", modelLabel(m), name, err)
		}
		p.maskType = dt
	}
	if name := role(feed.Positions); name != "" {
		p.positions = name
		dt, _, _ := graph.ValueShape(m.Input(p.positions))
		if dt != dtype.Int64 && dt != dtype.Int32 {
			return nil, errorf("%s: %s is %s; want int64 or int32", modelLabel(m), name, dt)
		}
		p.posType = dt
	}
	for _, name := range slices.Concat(past.names, []string{p.mask, p.positions}) {
		if err := checkTopLevelReads(m, name); err != nil {
			return nil, err
		}
	}
	p.present = make([]string, len(past.names))
	for i, name := range past.names {
		out := presentFor(m, name)
		if out == "" {
			if !p.replace {
				return nil, errorf("%s: past input %q has no present output (present%s) to return the cache in; use PrefixReplacePast to feed the prefix without a cache", modelLabel(m), name, strings.TrimPrefix(strings.TrimPrefix(name, "past_key_values"), "past"))
			}
			continue
		}
		if m.Producer(out) == nil {
			return nil, errorf("%s: present output %q has no producing node", modelLabel(m), out)
		}
		p.present[i] = out
	}
	return p, nil
}

// fedInput reports whether m has a graph input called name that no
// initializer gives a default.
func fedInput(m *graph.Model, name string) bool {
	return m.Input(name) != nil && m.Initializer(name) == nil
}

// checkTopLevelReads fails when a subgraph reads name: injection re-routes
// the main graph's readers only.
func checkTopLevelReads(m *graph.Model, name string) error {
	if name == "" {
		return nil
	}
	for _, n := range m.Consumers(name) {
		if !slices.Contains(n.Input, name) {
			return errorf("%s: input %q is read inside a subgraph of node %q (%s), which prefix injection cannot re-route", modelLabel(m), name, n.Name, n.OpType)
		}
	}
	return nil
}

// presentFor returns the graph output that holds the cache of past input
// name after a run, or "".
func presentFor(m *graph.Model, name string) string {
	var candidates []string
	if rest, ok := strings.CutPrefix(name, "past_key_values"); ok {
		candidates = []string{"present" + rest, "present_key_values" + rest}
	} else if rest, ok := strings.CutPrefix(name, "past_"); ok {
		candidates = []string{"present_" + rest, "present." + rest}
	}
	for _, c := range candidates {
		if m.IsGraphOutput(c) {
			return c
		}
	}
	return ""
}

// modelPlan reads the roles of m's inputs (package feed).
func modelPlan(m *graph.Model) *feed.Plan {
	var ins, outs []feed.Input
	for _, v := range m.Proto.Graph.Input {
		ins = append(ins, feed.FromValueInfo(v, m.Initializer(v.Name) != nil))
	}
	for _, v := range m.Proto.Graph.Output {
		outs = append(outs, feed.FromValueInfo(v, false))
	}
	return feed.Classify(ins, outs)
}

// findPast finds the self-attention KV-cache inputs of m (package feed's
// caches: past_key_values.{i}.key/value, past_key_self_{i}, stacked
// past_{i}, …) and reads their geometry. Layers need not be contiguous (a
// hybrid decoder has caches on its attention layers only); recurrent and
// convolution states and cross-attention caches are left alone.
func findPast(m *graph.Model) (pastInputs, error) {
	type layer struct{ key, value, stacked *onnxpb.ValueInfoProto }
	perLayer, stacked := map[int]*layer{}, map[int]*layer{}
	var all []string
	for _, v := range m.Proto.Graph.Input {
		all = append(all, v.Name)
	}
	for _, s := range modelPlan(m).ByRole(feed.Cache) {
		v := m.Input(s.Name)
		kind := cacheKind(s.Name)
		isKey, isValue := kind == "key", kind == "value"
		switch {
		case s.Layer < 0 || !isKey && !isValue && len(s.Shape) != 5:
			return pastInputs{}, errorf("%s: past input %s holds a cache that prefix injection cannot split by layer; it takes past_key_values.{i}.key and .value (or past_key_self_{i}, …) [batch, kv_heads, past, head_dim], or stacked past_{i} [2, batch, kv_heads, past, head_dim]", modelLabel(m), s.Input)
		case isKey || isValue:
			if s.LengthAxis != 2 {
				return pastInputs{}, errorf("%s: past input %s: prefix injection wants [batch, kv_heads, past, head_dim], the past length on axis 2", modelLabel(m), s.Input)
			}
			l := perLayer[s.Layer]
			if l == nil {
				l = &layer{}
				perLayer[s.Layer] = l
			}
			if isKey {
				l.key = v
			} else {
				l.value = v
			}
		default:
			if s.LengthAxis != 3 {
				return pastInputs{}, errorf("%s: past input %s: prefix injection wants stacked [2, batch, kv_heads, past, head_dim], the past length on axis 3", modelLabel(m), s.Input)
			}
			stacked[s.Layer] = &layer{stacked: v}
		}
	}
	switch {
	case len(perLayer) == 0 && len(stacked) == 0:
		return pastInputs{}, errorf("%s has no past key/value inputs to feed a prefix to (want past_key_values.{i}.key and .value, or stacked past_{i}); its inputs are: %s", modelLabel(m), strings.Join(all, ", "))
	case len(perLayer) != 0 && len(stacked) != 0:
		return pastInputs{}, errorf("%s has both per-layer past_key_values.{i}.key/value and stacked past_{i} inputs; cannot tell which is the cache", modelLabel(m))
	}
	p := pastInputs{stacked: len(stacked) != 0, kvHeads: -2, headDim: -2}
	layers := perLayer
	if p.stacked {
		layers = stacked
	}
	idx := make([]int, 0, len(layers))
	for i := range layers {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	p.layers = len(idx)
	for _, i := range idx {
		l := layers[i]
		var vs []*onnxpb.ValueInfoProto
		if p.stacked {
			vs = []*onnxpb.ValueInfoProto{l.stacked}
		} else {
			switch {
			case l.key == nil:
				return pastInputs{}, errorf("%s: past input %s of layer %d has no key input beside it", modelLabel(m), l.value.Name, i)
			case l.value == nil:
				return pastInputs{}, errorf("%s: past input %s of layer %d has no value input beside it", modelLabel(m), l.key.Name, i)
			}
			vs = []*onnxpb.ValueInfoProto{l.key, l.value}
		}
		for _, v := range vs {
			if err := p.add(m, v); err != nil {
				return pastInputs{}, err
			}
		}
	}
	return p, nil
}

// cacheKind returns "key" or "value", the last of the two among the words
// of a cache's name (past_key_values.0.value is a value), or "".
func cacheKind(name string) string {
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return r == '.' || r == '_' })
	for i := len(words) - 1; i >= 0; i-- {
		if words[i] == "key" || words[i] == "value" {
			return words[i]
		}
	}
	return ""
}

// add checks one past input against those seen before and records it.
func (p *pastInputs) add(m *graph.Model, v *onnxpb.ValueInfoProto) error {
	want := "[batch, kv_heads, past, head_dim]"
	rank := 4
	if p.stacked {
		want, rank = "[2, batch, kv_heads, past, head_dim]", 5
	}
	dt, dims, ok := graph.ValueShape(v)
	if !ok || len(dims) != rank {
		return errorf("%s: past input %q has shape %s; want %s", modelLabel(m), v.Name, dimList(dims, ok), want)
	}
	if !dt.IsFloat() {
		return errorf("%s: past input %q is %s; want a floating-point cache", modelLabel(m), v.Name, dt)
	}
	if p.stacked && dims[0] != 2 && dims[0] != -1 {
		return errorf("%s: past input %q has shape %s; want %s", modelLabel(m), v.Name, dimList(dims, ok), want)
	}
	kv, d := dims[rank-3], dims[rank-1]
	if len(p.names) == 0 {
		p.elem, p.kvHeads, p.headDim = dt, kv, d
	} else {
		switch {
		case dt != p.elem:
			return errorf("%s: past input %q is %s, but %q is %s", modelLabel(m), v.Name, dt, p.names[0], p.elem)
		case kv != p.kvHeads || d != p.headDim:
			return errorf("%s: past input %q has shape %s, but %q has %d KV heads of width %d", modelLabel(m), v.Name, dimList(dims, ok), p.names[0], p.kvHeads, p.headDim)
		}
	}
	p.names = append(p.names, v.Name)
	return nil
}

// dimList formats dims for messages, "?" for a dynamic one.
func dimList(dims []int64, ok bool) string {
	if !ok {
		return "unknown"
	}
	s := make([]string, len(dims))
	for i, d := range dims {
		if d < 0 {
			s[i] = "?"
		} else {
			s[i] = strconv.FormatInt(d, 10)
		}
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// embeddingWidth returns the width of the token embedding that the token
// ids (input_ids, or another name of package feed's) index
// (TokenEmbedding), or 0 when it is not found or not floating-point.
func embeddingWidth(m *graph.Model) int64 {
	ids := "input_ids"
	if s, ok := modelPlan(m).First(feed.TokenIDs); ok {
		ids = s.Name
	}
	if w := TokenEmbedding(m, ids); w != nil && graph.TypeOf(w).IsFloat() {
		return w.Dims[1]
	}
	return 0
}

// resolvePrefixConfig completes cfg from the graph's geometry and checks
// that the two agree.
func resolvePrefixConfig(m *graph.Model, cfg adapter.PrefixConfig, past pastInputs, hidden int64, headDim int) (adapter.PrefixConfig, error) {
	label := modelLabel(m)
	if cfg.NumPrefixTokens <= 0 {
		return cfg, errorf("prefix config: num_prefix_tokens must be positive, got %d", cfg.NumPrefixTokens)
	}
	if cfg.TensorParallelDegree > 1 {
		return cfg, errorf("tensor_parallel_degree %d: an ONNX graph holds whole, unsharded weights; merge the tensor-parallel shards of the prefix into one (degree 1) first", cfg.TensorParallelDegree)
	}
	if cfg.NumHiddenLayers < 0 || cfg.NumAttentionHeads < 0 || cfg.HiddenSize < 0 || cfg.MultiQueryGroupNum < 0 {
		return cfg, errorf("prefix config: sizes must not be negative: num_hidden_layers %d, num_attention_heads %d, hidden_size %d, multi_query_group_num %d",
			cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.HiddenSize, cfg.MultiQueryGroupNum)
	}
	switch {
	case cfg.NumHiddenLayers == 0:
		cfg.NumHiddenLayers = past.layers
	case cfg.NumHiddenLayers != past.layers:
		return cfg, errorf("prefix config: num_hidden_layers is %d, but %s has past inputs for %d layers (%s … %s)", cfg.NumHiddenLayers, label, past.layers, past.names[0], past.names[len(past.names)-1])
	}

	// KV heads.
	kv := int(past.kvHeads)
	switch {
	case cfg.MultiQueryGroupNum > 0:
		if kv > 0 && cfg.MultiQueryGroupNum != kv {
			return cfg, errorf("prefix config: multi_query_group_num (KV heads) is %d, but the past inputs of %s have %d KV heads (%s is %s)", cfg.MultiQueryGroupNum, label, kv, past.names[0], pastShapeText(past))
		}
		kv = cfg.MultiQueryGroupNum
	case kv > 0:
	case cfg.NumAttentionHeads > 0:
		kv = cfg.NumAttentionHeads
	default:
		return cfg, errorf("the KV heads of %s are unknown: %s leaves them dynamic; set multi_query_group_num", label, past.names[0])
	}

	// Head dim: from the graph, the option and the config; all that are
	// known must agree.
	type source struct {
		d    int
		what string
	}
	var known []source
	if past.headDim > 0 {
		known = append(known, source{int(past.headDim), fmt.Sprintf("the past inputs of %s have head dim %d", label, past.headDim)})
	}
	if headDim > 0 {
		known = append(known, source{headDim, fmt.Sprintf("the head dim is set to %d", headDim)})
	}
	if cfg.HiddenSize > 0 && cfg.NumAttentionHeads > 0 {
		if cfg.HiddenSize%cfg.NumAttentionHeads != 0 {
			return cfg, errorf("prefix config: hidden_size %d is not a multiple of num_attention_heads %d", cfg.HiddenSize, cfg.NumAttentionHeads)
		}
		known = append(known, source{cfg.HiddenSize / cfg.NumAttentionHeads, fmt.Sprintf("hidden_size %d / num_attention_heads %d gives head dim %d", cfg.HiddenSize, cfg.NumAttentionHeads, cfg.HiddenSize/cfg.NumAttentionHeads)})
	}
	if len(known) == 0 {
		return cfg, errorf("the head dim of %s is unknown: %s leaves it dynamic; set hidden_size and num_attention_heads, or the head dim", label, past.names[0])
	}
	d := known[0].d
	for _, k := range known[1:] {
		if k.d != d {
			return cfg, errorf("prefix config: %s, but %s", k.what, known[0].what)
		}
	}

	// Query heads and hidden size.
	switch {
	case cfg.NumAttentionHeads == 0 && cfg.HiddenSize == 0:
		if hidden > 0 && hidden%int64(d) == 0 && (hidden/int64(d))%int64(kv) == 0 {
			cfg.HiddenSize, cfg.NumAttentionHeads = int(hidden), int(hidden)/d
		} else {
			cfg.HiddenSize, cfg.NumAttentionHeads = kv*d, kv
		}
	case cfg.HiddenSize == 0:
		cfg.HiddenSize = cfg.NumAttentionHeads * d
	case cfg.NumAttentionHeads == 0:
		if cfg.HiddenSize%d != 0 {
			return cfg, errorf("prefix config: hidden_size %d is not a multiple of the head dim %d of %s; set num_attention_heads", cfg.HiddenSize, d, label)
		}
		cfg.NumAttentionHeads = cfg.HiddenSize / d
	}
	cfg.MultiQueryGroupNum = kv
	if cfg.PrefixProjection && cfg.PrefixProjectionHiddenSize == 0 {
		// HF PEFT's encoder_hidden_size defaults to token_dim.
		cfg.PrefixProjectionHiddenSize = cfg.HiddenSize
	}
	if err := cfg.Validate(); err != nil {
		return cfg, errorf("%w", err)
	}
	if err := checkPrefixLimits(&cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// pastShapeText formats the first past input's shape.
func pastShapeText(p pastInputs) string {
	dims := []int64{-1, p.kvHeads, -1, p.headDim}
	if p.stacked {
		dims = append([]int64{2}, dims...)
	}
	return dimList(dims, true)
}
