package rewrite

import (
	"encoding/binary"
	"math"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// prefixBuilder adds the prefix nodes to a model and records them.
type prefixBuilder struct {
	m     *graph.Model
	site  *PrefixSite
	nodes []*onnxpb.NodeProto // every node added, skipped when re-routing readers
}

// node adds a node named scope+"/"+op (made unique) with one fresh output,
// and returns the output.
func (b *prefixBuilder) node(scope, op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return b.nodeN(scope, op, inputs, 1, attrs...)[0]
}

// nodeN is node for an op with n outputs.
func (b *prefixBuilder) nodeN(scope, op string, inputs []string, n int, attrs ...*onnxpb.AttributeProto) []string {
	name := b.m.UniqueName(scope + "/" + op)
	outs := make([]string, n)
	for i := range outs {
		outs[i] = b.m.UniqueName(name + "/output_" + strconv.Itoa(i))
	}
	b.add(&onnxpb.NodeProto{OpType: op, Name: name, Input: inputs, Output: outs, Attribute: attrs})
	return outs
}

// add adds n and records it.
func (b *prefixBuilder) add(n *onnxpb.NodeProto) {
	b.m.AddNode(n)
	b.nodes = append(b.nodes, n)
	b.site.Nodes = append(b.site.Nodes, n.Name)
}

// constant adds a helper initializer named after name (made unique) and
// returns its name.
func (b *prefixBuilder) constant(name string, t *onnxpb.TensorProto) string {
	t.Name = b.m.UniqueName(name)
	b.m.AddInitializer(t)
	b.site.Initializers = append(b.site.Initializers, t.Name)
	return t.Name
}

// int64s adds a 1-D int64 helper initializer.
func (b *prefixBuilder) int64s(name string, v ...int64) string {
	return b.constant(name, graph.NewInt64Tensor("", []int64{int64(len(v))}, v))
}

// reroute makes the model's readers of old, other than the prefix nodes,
// read new.
func (b *prefixBuilder) reroute(old, new string) {
	b.m.ReplaceUses(old, new, b.nodes...)
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
	b := &prefixBuilder{m: m, site: site}
	const scope = "/prefix_encoder"

	names := make([]string, len(params))
	for i, p := range params {
		names[i] = m.UniqueName(p.name)
		m.AddInitializer(graph.NewFloat32Tensor(names[i], plan.paramType, p.shape, p.values))
	}
	site.Prompt = names[0]
	table := names[0]
	if c.PrefixProjection {
		site.Projection = names[1:]
		h := b.node(scope+"/transform.0", "MatMul", []string{table, names[1]})
		h = b.node(scope+"/transform.0", "Add", []string{h, names[2]})
		h = b.node(scope+"/transform.1", "Tanh", []string{h})
		h = b.node(scope+"/transform.2", "MatMul", []string{h, names[3]})
		table = b.node(scope+"/transform.2", "Add", []string{h, names[4]})
	}
	if plan.paramType != past.elem {
		table = b.node(scope, "Cast", []string{table}, graph.AttrInt("to", int64(past.elem)))
	}

	// [P, 2L·kv·D] → [P, 2L, kv, D] → [2L, kv, P, D] → [2L, 1, kv, P, D],
	// then broadcast over the batch.
	x := b.node(scope, "Reshape", []string{table, b.int64s("prefix_table_shape", P, 2*L, kv, d)})
	x = b.node(scope, "Transpose", []string{x}, graph.AttrInts("perm", 1, 2, 0, 3))
	x = b.node(scope, "Reshape", []string{x, b.int64s("prefix_kv_shape", 2*L, 1, kv, P, d)})
	batch := b.node(scope+"/batch", "Gather", []string{b.node(scope+"/batch", "Shape", []string{plan.batchFrom}), b.int64s("prefix_axis_0", 0)}, graph.AttrInt("axis", 0))
	expand := b.node(scope+"/batch", "Concat", []string{b.int64s("prefix_one", 1), batch, b.int64s("prefix_ones_3", 1, 1, 1)}, graph.AttrInt("axis", 0))
	x = b.node(scope, "Expand", []string{x, expand})
	if c.PrefixDropout > 0 {
		full := b.node(scope+"/batch", "Concat", []string{b.int64s("prefix_layers_2", 2*L), batch, b.int64s("prefix_kv_p_d", kv, P, d)}, graph.AttrInt("axis", 0))
		x = b.dropout(plan, x, full)
	}

	// Each past input gets its slice of the table: [B, kv, P, D] for a key
	// or value, [2, B, kv, P, D] for a stacked input.
	for i, name := range past.names {
		var idx *onnxpb.TensorProto
		if past.stacked {
			idx = graph.NewInt64Tensor("", []int64{2}, []int64{2 * int64(i), 2*int64(i) + 1})
		} else {
			idx = graph.NewInt64Tensor("", nil, []int64{int64(i)})
		}
		layerScope := "/prefix_encoder/layers." + strconv.Itoa(i/2)
		if past.stacked {
			layerScope = "/prefix_encoder/layers." + strconv.Itoa(i)
		}
		v := b.node(layerScope, "Gather", []string{x, b.constant("prefix_index_"+strconv.Itoa(i), idx)}, graph.AttrInt("axis", 0))
		if plan.replace {
			b.reroute(name, v)
			m.RemoveInput(name)
			continue
		}
		v = b.node(layerScope, "Concat", []string{v, name}, graph.AttrInt("axis", past.seqAxis()))
		b.reroute(name, v)
	}

	b.slicePresents(plan)
	if plan.mask != "" {
		b.padMask(plan)
	}
	if plan.positions != "" {
		b.shiftPositions(plan)
	}
	if err := m.SortNodes(); err != nil {
		return nil, errorf("%s: %v", modelLabel(m), err)
	}
	return site, nil
}

// slicePresents drops the P prefix positions from the present outputs: the
// node that wrote each one writes a fresh value, which its other readers
// now read, and a Slice writes the output.
func (b *prefixBuilder) slicePresents(plan *prefixPlan) {
	m := b.m
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
		name := m.UniqueName("/prefix_encoder/present/Slice")
		n := &onnxpb.NodeProto{OpType: "Slice", Name: name, Output: []string{out}}
		if plan.opset >= 10 {
			if starts == "" {
				starts = b.int64s("prefix_present_starts", P)
				ends = b.int64s("prefix_present_ends", math.MaxInt64)
				axes = b.int64s("prefix_present_axes", axis)
			}
			n.Input = []string{fresh, starts, ends, axes}
		} else {
			n.Input = []string{fresh}
			n.Attribute = []*onnxpb.AttributeProto{graph.AttrInts("starts", P), graph.AttrInts("ends", math.MaxInt64), graph.AttrInts("axes", axis)}
		}
		b.add(n)
	}
}

// padMask prepends P ones to the attention mask, for every batch row.
func (b *prefixBuilder) padMask(plan *prefixPlan) {
	const scope = "/prefix_encoder/attention_mask"
	P := int64(plan.cfg.NumPrefixTokens)
	ones, _ := onesTensor(plan.maskType, []int64{1, P}) // checked by planPrefix
	onesName := b.constant("prefix_attention_mask_ones", ones)
	batch := b.node(scope, "Gather", []string{b.node(scope, "Shape", []string{plan.mask}), b.int64s("prefix_axis_0", 0)}, graph.AttrInt("axis", 0))
	shape := b.node(scope, "Concat", []string{batch, b.int64s("prefix_tokens", P)}, graph.AttrInt("axis", 0))
	pad := b.node(scope, "Expand", []string{onesName, shape})
	padded := b.node(scope, "Concat", []string{pad, plan.mask}, graph.AttrInt("axis", 1))
	b.site.AttentionMask = plan.mask
	b.reroute(plan.mask, padded)
}

// shiftPositions adds P to the position ids.
func (b *prefixBuilder) shiftPositions(plan *prefixPlan) {
	P := int64(plan.cfg.NumPrefixTokens)
	var off *onnxpb.TensorProto
	if plan.posType == dtype.Int32 {
		off = &onnxpb.TensorProto{DataType: int32(dtype.Int32), RawData: binary.LittleEndian.AppendUint32(nil, uint32(P))}
	} else {
		off = graph.NewInt64Tensor("", nil, []int64{P})
	}
	shifted := b.node("/prefix_encoder/position_ids", "Add", []string{plan.positions, b.constant("prefix_position_offset", off)})
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
func (b *prefixBuilder) dropout(plan *prefixPlan, x, shape string) string {
	const scope = "/prefix_encoder/dropout"
	m := b.m
	training := PrefixTrainingModeInput
	if m.HasName(training) {
		training = m.UniqueName(training)
	}
	m.AddInput(graph.TensorInfo(training, dtype.Bool, nil))
	m.AddInitializer(&onnxpb.TensorProto{Name: training, DataType: int32(dtype.Bool), RawData: []byte{0}})
	b.site.TrainingMode = training
	b.site.Initializers = append(b.site.Initializers, training)
	scalar := func(name string, v float32) string {
		return b.constant(name, graph.NewFloat32Tensor("", dtype.Float32, nil, []float32{v}))
	}
	dt := plan.past.elem
	one := scalar("prefix_dropout_one", 1)
	r := b.node(scope, "Where", []string{training, scalar("prefix_dropout_ratio", float32(plan.cfg.PrefixDropout)), scalar("prefix_dropout_zero", 0)})
	scale := b.node(scope, "Div", []string{one, b.node(scope, "Sub", []string{one, r})})
	zeros := b.node(scope, "ConstantOfShape", []string{shape})
	u := b.node(scope, "RandomUniformLike", []string{zeros}, graph.AttrInt("dtype", int64(dtype.Float32)))
	keep := b.node(scope, "Not", []string{b.node(scope, "Less", []string{u, r})})
	keepF := b.node(scope, "Cast", []string{keep}, graph.AttrInt("to", int64(dt)))
	if dt != dtype.Float32 {
		scale = b.node(scope, "Cast", []string{scale}, graph.AttrInt("to", int64(dt)))
	}
	return b.node(scope, "Mul", []string{b.node(scope, "Mul", []string{x, keepF}), scale})
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
