package rewrite

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// prefixGraph adds the prefix nodes to a model through a graph.Builder
// and records them in the site: the nodes (Nodes, and the list that
// re-routing skips) and the helper initializers (Initializers).
type prefixGraph struct {
	g     *graph.Builder
	site  *PrefixSite
	nodes []*onnxpb.NodeProto // every node added, skipped when re-routing readers
}

func newPrefixGraph(m *graph.Model, site *PrefixSite) *prefixGraph {
	b := &prefixGraph{site: site}
	b.g = graph.NewBuilder(m, graph.BuilderOptions{Scope: "/prefix_encoder", Outputs: graph.OutputsUnderNode,
		OnNode: func(n *onnxpb.NodeProto) {
			b.nodes = append(b.nodes, n)
			site.Nodes = append(site.Nodes, n.Name)
		},
		OnInitializer: func(t *onnxpb.TensorProto) { site.Initializers = append(site.Initializers, t.Name) },
	})
	return b
}

// int64s adds a 1-D int64 helper initializer named after name.
func (b *prefixGraph) int64s(name string, v ...int64) string {
	return b.g.Initializer(name, graph.NewInt64Tensor("", []int64{int64(len(v))}, v))
}

// reroute makes the model's readers of old, other than the prefix nodes,
// read new.
func (b *prefixGraph) reroute(old, new string) {
	b.g.Model().ReplaceUses(old, new, b.nodes...)
}

// buildPrefix changes m as plan says, with the given parameters, and
// returns the site.
func buildPrefix(m *graph.Model, plan *prefixPlan, params []prefixParam) (*PrefixSite, error) {
	c := &plan.cfg
	past := plan.past
	P, L := int64(c.NumPrefixTokens), int64(c.NumHiddenLayers)
	kv, d := int64(c.KVHeads()), int64(c.HeadDim())
	site := &PrefixSite{
		Config:       *c,
		Stacked:      past.stacked,
		Past:         append([]string(nil), past.names...),
		ReplacedPast: plan.replace,
		KVDType:      past.elem,
		ParamDType:   plan.paramType,
		Nodes:        []string{},
	}
	masks := newTokenMasks(m, past.names)
	b := newPrefixGraph(m, site)
	enc := b.g

	names := make([]string, len(params))
	for i, p := range params {
		names[i] = m.UniqueName(p.name)
		m.AddInitializer(graph.NewFloat32Tensor(names[i], plan.paramType, p.shape, p.values))
	}
	site.Prompt = names[0]
	table := names[0]
	if c.PrefixProjection {
		site.Projection = names[1:]
		t0, t2 := enc.In("transform.0"), enc.In("transform.2")
		h := t0.Op("MatMul", []string{table, names[1]})
		h = t0.Op("Add", []string{h, names[2]})
		h = enc.In("transform.1").Op("Tanh", []string{h})
		h = t2.Op("MatMul", []string{h, names[3]})
		table = t2.Op("Add", []string{h, names[4]})
	}
	if plan.paramType != past.elem {
		table = enc.Op("Cast", []string{table}, graph.AttrInt("to", int64(past.elem)))
	}

	// [P, 2L·kv·D] → [P, 2L, kv, D] → [2L, kv, P, D] → [2L, 1, kv, P, D],
	// then broadcast over the batch.
	x := enc.Op("Reshape", []string{table, b.int64s("prefix_table_shape", P, 2*L, kv, d)})
	x = enc.Op("Transpose", []string{x}, graph.AttrInts("perm", 1, 2, 0, 3))
	x = enc.Op("Reshape", []string{x, b.int64s("prefix_kv_shape", 2*L, 1, kv, P, d)})
	bs := enc.In("batch")
	batch := bs.Op("Gather", []string{bs.Op("Shape", []string{plan.batchFrom}), b.int64s("prefix_axis_0", 0)}, graph.AttrInt("axis", 0))
	expand := bs.Op("Concat", []string{b.int64s("prefix_one", 1), batch, b.int64s("prefix_ones_3", 1, 1, 1)}, graph.AttrInt("axis", 0))
	x = enc.Op("Expand", []string{x, expand})
	if c.PrefixDropout > 0 {
		full := bs.Op("Concat", []string{b.int64s("prefix_layers_2", 2*L), batch, b.int64s("prefix_kv_p_d", kv, P, d)}, graph.AttrInt("axis", 0))
		x = b.dropout(plan, x, full)
	}

	// Each past input gets its slice of the table: [B, kv, P, D] for a key
	// or value, [2, B, kv, P, D] for a stacked input.
	for i, name := range past.names {
		var idx *onnxpb.TensorProto
		layer := enc.In("layers." + strconv.Itoa(i/2))
		if past.stacked {
			idx = graph.NewInt64Tensor("", []int64{2}, []int64{2 * int64(i), 2*int64(i) + 1})
			layer = enc.In("layers." + strconv.Itoa(i))
		} else {
			idx = graph.NewInt64Tensor("", nil, []int64{int64(i)})
		}
		v := layer.Op("Gather", []string{x, b.g.Initializer("prefix_index_"+strconv.Itoa(i), idx)}, graph.AttrInt("axis", 0))
		if plan.replace {
			b.reroute(name, v)
			m.RemoveInput(name)
			continue
		}
		v = layer.Op("Concat", []string{v, name}, graph.AttrInt("axis", past.seqAxis()))
		b.reroute(name, v)
	}

	b.slicePresents(plan)
	if plan.mask != "" {
		b.padMask(plan)
	}
	if plan.positions != "" {
		b.shiftPositions(plan)
	}
	if !plan.replace {
		b.widenNewTokenMasks(plan, masks)
	}
	if err := m.SortNodes(); err != nil {
		return nil, errorf("%s: %w", modelLabel(m), err)
	}
	return site, nil
}

// slicePresents drops the P prefix positions from the present outputs: the
// node that wrote each one writes a fresh value, which its other readers
// now read, and a Slice writes the output.
func (b *prefixGraph) slicePresents(plan *prefixPlan) {
	m := b.g.Model()
	full := map[string]string{}
	for _, out := range plan.present {
		if out == "" {
			continue
		}
		prod := m.Producer(out)
		fresh := m.UniqueName(out + "/with_prefix")
		for j, o := range prod.Output {
			if o == out {
				prod.Output[j] = fresh
			}
		}
		full[out] = fresh
	}
	if len(full) == 0 {
		return
	}
	m.Reindex()
	P := int64(plan.cfg.NumPrefixTokens)
	axis := plan.past.seqAxis()
	var starts, ends, axes string
	for _, out := range plan.present {
		if out == "" {
			continue
		}
		fresh := full[out]
		m.ReplaceUses(out, fresh)
		b.site.Present = append(b.site.Present, out)
		inputs, attrs := []string{fresh}, []*onnxpb.AttributeProto{graph.AttrInts("starts", P), graph.AttrInts("ends", math.MaxInt64), graph.AttrInts("axes", axis)}
		if plan.opset >= 10 {
			if starts == "" {
				starts = b.int64s("prefix_present_starts", P)
				ends = b.int64s("prefix_present_ends", math.MaxInt64)
				axes = b.int64s("prefix_present_axes", axis)
			}
			inputs, attrs = []string{fresh, starts, ends, axes}, nil
		}
		b.g.In("present").NodeTo("", "Slice", inputs, []string{out}, attrs...)
	}
}

// padMask prepends P ones to the attention mask, for every batch row.
func (b *prefixGraph) padMask(plan *prefixPlan) {
	s := b.g.In("attention_mask")
	P := int64(plan.cfg.NumPrefixTokens)
	ones, _ := onesTensor(plan.maskType, []int64{1, P}) // checked by planPrefix
	onesName := b.g.Initializer("prefix_attention_mask_ones", ones)
	batch := s.Op("Gather", []string{s.Op("Shape", []string{plan.mask}), b.int64s("prefix_axis_0", 0)}, graph.AttrInt("axis", 0))
	shape := s.Op("Concat", []string{batch, b.int64s("prefix_tokens", P)}, graph.AttrInt("axis", 0))
	pad := s.Op("Expand", []string{onesName, shape})
	padded := s.Op("Concat", []string{pad, plan.mask}, graph.AttrInt("axis", 1))
	b.site.AttentionMask = plan.mask
	b.reroute(plan.mask, padded)
}

// shiftPositions adds P to the position ids.
func (b *prefixGraph) shiftPositions(plan *prefixPlan) {
	P := int64(plan.cfg.NumPrefixTokens)
	var off *onnxpb.TensorProto
	if plan.posType == dtype.Int32 {
		off = &onnxpb.TensorProto{DataType: int32(dtype.Int32), RawData: binary.LittleEndian.AppendUint32(nil, uint32(P))}
	} else {
		off = graph.NewInt64Tensor("", nil, []int64{P})
	}
	shifted := b.g.In("position_ids").Op("Add", []string{plan.positions, b.g.Initializer("prefix_position_offset", off)})
	b.site.PositionIDs = plan.positions
	b.reroute(plan.positions, shifted)
}

// dropout adds inverted dropout of rate PrefixDropout on x, the prefix
// [2L, B, kv, P, D] of shape shape, active only when
// PrefixTrainingModeInput is true: each element is kept with probability
// 1-rate and then scaled by 1/(1-rate), independently per batch row, as
// PaddleNLP drops out the batch-expanded prefix.
//
// It is built from RandomUniformLike, Less, Not, Cast and Mul, not a
// Dropout node: ONNX Runtime's inference builds remove a Dropout whose
// mask output nobody reads (EliminateDropout), whatever its training_mode.
// The random draw reads zeros of x's shape, not x, so that no
// non-differentiable op lies on the parameters' path.
func (b *prefixGraph) dropout(plan *prefixPlan, x, shape string) string {
	s := b.g.In("dropout")
	training := b.g.InputWithDefault(PrefixTrainingModeInput, &onnxpb.TensorProto{DataType: int32(dtype.Bool), RawData: []byte{0}})
	b.site.TrainingMode = training
	scalar := func(name string, v float32) string {
		return b.g.Initializer(name, graph.NewFloat32Tensor("", dtype.Float32, nil, []float32{v}))
	}
	dt := plan.past.elem
	one := scalar("prefix_dropout_one", 1)
	r := s.Op("Where", []string{training, scalar("prefix_dropout_ratio", float32(plan.cfg.PrefixDropout)), scalar("prefix_dropout_zero", 0)})
	scale := s.Op("Div", []string{one, s.Op("Sub", []string{one, r})})
	zeros := s.Op("ConstantOfShape", []string{shape})
	u := s.Op("RandomUniformLike", []string{zeros}, graph.AttrInt("dtype", int64(dtype.Float32)))
	keep := s.Op("Not", []string{s.Op("Less", []string{u, r})})
	keepF := s.Op("Cast", []string{keep}, graph.AttrInt("to", int64(dt)))
	if dt != dtype.Float32 {
		scale = s.Op("Cast", []string{scale}, graph.AttrInt("to", int64(dt)))
	}
	return s.Op("Mul", []string{s.Op("Mul", []string{x, keepF}), scale})
}

// onesTensor returns a tensor of element type dt and shape dims filled
// with ones (true for bool).
func onesTensor(dt dtype.Type, dims []int64) (*onnxpb.TensorProto, error) {
	n := graph.NumElements(dims)
	switch dt {
	case dtype.Float32, dtype.Float16, dtype.BFloat16, dtype.Float64:
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return graph.NewFloat32Tensor("", dt, dims, v), nil
	case dtype.Int64:
		v := make([]int64, n)
		for i := range v {
			v[i] = 1
		}
		return graph.NewInt64Tensor("", dims, v), nil
	case dtype.Int32:
		raw := make([]byte, 0, 4*n)
		for range n {
			raw = binary.LittleEndian.AppendUint32(raw, 1)
		}
		return &onnxpb.TensorProto{DataType: int32(dt), Dims: dims, RawData: raw}, nil
	case dtype.Bool, dtype.Uint8, dtype.Int8:
		raw := make([]byte, n)
		for i := range raw {
			raw[i] = 1
		}
		return &onnxpb.TensorProto{DataType: int32(dt), Dims: dims, RawData: raw}, nil
	}
	return nil, errorf("element type %s: want a float, int64, int32, int8, uint8 or bool mask", dt)
}
