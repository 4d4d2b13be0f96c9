package rewrite

import (
	"maps"
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// StackedIndexInput is the int64 [batch] graph input of a stacked model
// (StackLoRA): row b of the batch runs the adapter in slot index[b] of
// the stacked factors. Slot 0 is the base by convention (all zeros, and
// a gain of one in a stack of StackDoRA).
const StackedIndexInput = "lora_adapter_index"

// StackedSite is one linear layer of a stacked model.
type StackedSite struct {
	Module  string
	In, Out int64
	// A and B name the graph inputs: A [K, In, R] and B [K, R, Out],
	// float32, K slots of rank R each (a smaller rank padded with zeros,
	// the scaling folded into B).
	A, B string
	// Gain names the graph input G [K, 1, Out], float32, of a stack that
	// takes DoRA adapters (StackDoRA): slot k's DoRA gain m/‖V‖ per
	// output feature, ones for a slot without DoRA (the base, a LoRA
	// adapter, a free slot). It is "" in a stack of StackLoRA.
	Gain string
}

// Stacked records what StackLoRA did to a model: its sites, by module, in
// the order of FindLinears. A stack of StackDoRA also holds the sites'
// base weights, for Factors, until Close.
type Stacked struct {
	Sites []StackedSite
	Index string   // StackedIndexInput
	all   []string // every linear module of the model, stacked or not
	// dora holds each site's base weight tensor of the stacked model, in
	// a stack of StackDoRA; nil in one of StackLoRA.
	dora *doraSource
}

// StackLoRA gives every linear layer of m (or those that targets select,
// as MatchTargets selects them) a LoRA branch whose factors are chosen
// per row of the batch:
//
//	y[b] = x[b]·W + x[b]·A[index[b]]·B[index[b]]
//
// with stacked graph inputs A [K, in, R] and B [K, R, out] per module and
// one index input (StackedIndexInput, int64 [batch]), so that one run
// serves a batch whose rows use different adapters and ranks. K and R are
// dynamic: slot k holds an adapter's A and its B times its scaling, padded
// with zeros to R (Stacked.Factors gives them); rows of slot 0 fed zeros
// compute the base model. The branch computes in float32. The layer's
// activation is read as [batch, …, in] (any leading axes after the batch,
// such as the sequence, or none where the exporter flattened batch and
// sequence together). m must carry no LoRA branches; Gemm layers with
// transA are refused, and so are com.microsoft Attention layers, whose
// packed q, k, v weight is inside the node (without targets they are left
// out of the stack). StackLoRA changes nothing when it fails. Every
// branch costs a few small nodes per run, so a server that knows which
// modules its adapters train saves time by naming them. StackDoRA stacks
// DoRA adapters too.
func StackLoRA(m *graph.Model, targets ...string) (*Stacked, error) {
	return stack(m, false, targets)
}

// stack is StackLoRA, and with dora StackDoRA.
func stack(m *graph.Model, dora bool, targets []string) (*Stacked, error) {
	if _, ok, err := readRecord(m); err != nil {
		return nil, err
	} else if ok {
		return nil, errorf("%s already carries LoRA branches: stack its base model", modelLabel(m))
	}
	if m.HasName(StackedIndexInput) {
		return nil, errorf("%s already has a value named %q", modelLabel(m), StackedIndexInput)
	}
	linears, err := FindLinears(m)
	if err != nil {
		return nil, err
	}
	if len(linears) == 0 {
		return nil, errorf("%s has no linear layers to stack adapters on", modelLabel(m))
	}
	all := linears
	if len(targets) > 0 {
		if linears, err = MatchTargets(linears, targets); err != nil {
			return nil, err
		}
	} else {
		linears = slices.DeleteFunc(slices.Clone(linears), func(l Linear) bool { return l.Op == OpAttention })
		if len(linears) == 0 {
			return nil, errorf("%s has no linear layers to stack adapters on outside its fused Attention nodes", modelLabel(m))
		}
	}
	for _, l := range linears {
		if l.Op == OpAttention {
			return nil, layerErr(l, "a com.microsoft Attention node computes q, k and v inside it from its packed weight, which a stacked branch (added to a layer's output) cannot reach: serve an adapter of this layer merged (peftonnx merge), or name targets that leave it out")
		}
		if l.TransA {
			return nil, layerErr(l, "Gemm with transA is not supported by stacked adapters")
		}
		if err := checkRewirable(m, l); err != nil {
			return nil, err
		}
		if dora {
			if err := checkDoRA(l, false); err != nil {
				return nil, err
			}
			if l.Quantized() || l.Dequantized() {
				// The gains are computed on the host from the float weight.
				return nil, layerErr(l, "use_dora: stacked DoRA adapters need the layer's float weight; %s is %s: serve its DoRA adapters merged (peftonnx merge), or name targets that leave it out", l.Weight, l.Op)
			}
		}
	}
	var src *doraSource
	if dora {
		var err error
		if src, err = newDoRASource(m, linears); err != nil {
			return nil, err
		}
	}

	original := slices.Clone(m.Proto.Graph.Node)
	after := map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}
	var front []*onnxpb.NodeProto
	var base *onnxpb.NodeProto
	g := graph.NewBuilder(m, graph.BuilderOptions{Outputs: graph.OutputsUnderNode, OnNode: func(n *onnxpb.NodeProto) {
		if base == nil {
			front = append(front, n)
		} else {
			after[base] = append(after[base], n)
		}
	}})
	m.AddInput(graph.TensorInfo(StackedIndexInput, dtype.Int64, []int64{-1}))
	root := g.At("/lora_stacked")
	batch := root.Op("Shape", []string{StackedIndexInput})
	// rows[n] is [batch, -1, n], the shape that reads an activation of n
	// features per row of the batch (an input, and with DoRA an output):
	// one node per width, not per layer.
	rows := map[int64]string{}
	for _, l := range linears {
		widths := []int64{l.In}
		if dora {
			widths = append(widths, l.Out)
		}
		for _, n := range widths {
			if _, ok := rows[n]; !ok {
				rows[n] = root.Op("Concat", []string{batch, root.Int64s(-1, n)}, graph.AttrInt("axis", 0))
			}
		}
	}

	st := &Stacked{Index: StackedIndexInput, all: LinearModules(all), dora: src}
	sites := map[string]StackedSite{}
	for _, l := range linears {
		s, ok := sites[l.Module]
		if !ok {
			s = StackedSite{Module: l.Module, In: l.In, Out: l.Out,
				A: l.Module + ".lora_A.stacked", B: l.Module + ".lora_B.stacked"}
			names := []string{s.A, s.B}
			if dora {
				s.Gain = l.Module + ".dora_gain.stacked"
				names = append(names, s.Gain)
			}
			for _, name := range names {
				if m.HasName(name) {
					st.Close()
					return nil, layerErr(l, "the model already has a value named %q", name)
				}
			}
			m.AddInput(graph.TensorInfo(s.A, dtype.Float32, []int64{-1, s.In, -1}))
			m.AddInput(graph.TensorInfo(s.B, dtype.Float32, []int64{-1, -1, s.Out}))
			if dora {
				m.AddInput(graph.TensorInfo(s.Gain, dtype.Float32, []int64{-1, 1, s.Out}))
			}
			sites[l.Module] = s
			st.Sites = append(st.Sites, s)
		}
		base = l.Node
		y := l.Node.Output[0]
		if sum := stackedBranch(g.At(prefix(l)).In("lora_stacked"), m, l, s, rows); sum != "" {
			m.ReplaceUses(y, sum, after[l.Node]...)
		}
		base = nil
	}
	nodes := make([]*onnxpb.NodeProto, 0, len(m.Proto.Graph.Node))
	nodes = append(nodes, front...)
	for _, n := range original {
		nodes = append(nodes, n)
		nodes = append(nodes, after[n]...)
	}
	m.Proto.Graph.Node = nodes
	m.Reindex()
	return st, nil
}

// stackedBranch adds the branch of layer l, reading site s's factors
// (and its DoRA gain), and returns the sum that l's readers must read
// instead of l's output; "" where l's output is a graph output, which the
// sum then takes over (l writes a new name). rows[n] is the shape
// [batch, -1, n].
func stackedBranch(b *graph.Builder, m *graph.Model, l Linear, s StackedSite, rows map[int64]string) string {
	y := l.Node.Output[0]
	baseOut := y
	if m.IsGraphOutput(y) {
		baseOut = m.UniqueName(y + "/lora_base")
		l.Node.Output[0] = baseOut
		m.Reindex()
	}
	x := l.Node.Input[0]
	if l.DType != dtype.Float32 {
		x = b.Op("Cast", []string{x}, graph.AttrInt("to", int64(dtype.Float32)))
	}
	x3 := b.Op("Reshape", []string{x, rows[s.In]})
	a := b.Op("Gather", []string{s.A, StackedIndexInput}, graph.AttrInt("axis", 0))
	bf := b.Op("Gather", []string{s.B, StackedIndexInput}, graph.AttrInt("axis", 0))
	h := b.Op("MatMul", []string{x3, a})
	d := b.Op("MatMul", []string{h, bf})
	if l.DType != dtype.Float32 {
		d = b.Op("Cast", []string{d}, graph.AttrInt("to", int64(l.DType)))
	}
	shape := b.Op("Shape", []string{baseOut})
	op, inputs := "Add", []string{baseOut, b.Op("Reshape", []string{d, shape})}
	if s.Gain != "" {
		op, inputs = "Reshape", []string{stackedDoRA(b, l, s, rows[s.Out], baseOut, d), shape}
	}
	if baseOut != y {
		b.NodeTo("", op, inputs, []string{y})
		return ""
	}
	return b.Op(op, inputs)
}

// StackedFactor is one module's factors for a slot of a stacked model:
// A [In, R] as the adapter has it and B [R, Out] times the module's
// scaling, both float32, row-major. Gain [Out] is a DoRA adapter's gain
// m/‖V‖ per output feature, for the site's Gain input; nil for a LoRA
// adapter, whose gain is one.
type StackedFactor struct {
	R    int
	A, B []float32
	Gain []float32
}

// Factors matches LoRA adapter ad's modules to the sites, as Apply
// matches them, and returns each matched module's factors by site module.
// An adapter that does not fit is an error that says what: a module that
// matches no layer (listing those that exist), factors of the wrong
// shape, a fused projection (enable_lora_list), trained base tensors, a
// DoRA adapter on a stack of StackLoRA (or one without its magnitude), or
// not being a LoRA adapter at all. A DoRA adapter's gain is computed here,
// from the base weights of the model that StackDoRA stacked (an error
// after Stacked.Close). Factors is safe for concurrent use.
func (st *Stacked) Factors(ad *adapter.Adapter) (map[string]StackedFactor, error) {
	if ad.LoRA == nil {
		return nil, errorf("not a LoRA adapter: stacked factors take LoRA adapters only")
	}
	if ad.LoRA.UseDoRA && st.dora == nil {
		return nil, errorf("a DoRA adapter (use_dora) rescales each output feature by its magnitude over ‖W + s·A·B‖, which a stack of StackLoRA does not carry: stack the model with StackDoRA")
	}
	if len(ad.Extra) > 0 {
		return nil, errorf("the adapter also trains %d base tensors (%s), which stacked adapters cannot carry", len(ad.Extra), joinNames(slices.Sorted(maps.Keys(ad.Extra))))
	}
	cfg := ad.LoRA
	modules := make([]string, len(st.Sites))
	bySite := map[string]StackedSite{}
	for i, s := range st.Sites {
		modules[i] = s.Module
		bySite[s.Module] = s
	}
	out := map[string]StackedFactor{}
	taken := map[string]string{}
	for _, key := range ad.Modules() {
		mod, err := matchModule(key, modules)
		if err != nil {
			if other, oerr := matchModule(key, st.all); oerr == nil {
				return nil, errorf("adapter module %q is layer %q, which is not among the stacked targets (%s)", key, other, joinNames(modules))
			}
			return nil, errorf("adapter module %q %w; the layers are: %s", key, err, joinNames(modules))
		}
		if prev, ok := taken[mod]; ok {
			return nil, errorf("adapter modules %q and %q both match layer %q", prev, key, mod)
		}
		taken[mod] = key
		if cfg.EnableFor(key) != nil {
			return nil, errorf("adapter module %q is a fused projection (enable_lora_list), which stacked adapters do not take", key)
		}
		s := bySite[mod]
		w := ad.Weights[key]
		if w.A == nil || w.B == nil || len(w.A.Shape) != 2 || len(w.B.Shape) != 2 {
			return nil, errorf("adapter module %q lacks a 2-D lora_A or lora_B", key)
		}
		r := w.A.Shape[1]
		if w.A.Shape[0] != s.In || w.B.Shape[0] != r || w.B.Shape[1] != s.Out ||
			len(w.A.Data) != int(s.In*r) || len(w.B.Data) != int(r*s.Out) {
			return nil, errorf("adapter module %q has lora_A %v and lora_B %v; layer %q (%d×%d) needs [%d, r] and [r, %d]",
				key, w.A.Shape, w.B.Shape, mod, s.In, s.Out, s.In, s.Out)
		}
		scale := cfg.ScalingFor(key)
		b := make([]float32, len(w.B.Data))
		for i, v := range w.B.Data {
			b[i] = v * float32(scale)
		}
		f := StackedFactor{R: int(r), A: slices.Clone(w.A.Data), B: b}
		if cfg.UseDoRA {
			if f.Gain, err = st.dora.gain(mod, cfg, key, w, scale); err != nil {
				return nil, err
			}
		}
		out[mod] = f
	}
	if len(out) == 0 {
		return nil, errorf("the adapter has no modules")
	}
	return out, nil
}
