package models

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// The functions here turn a model built by this package into the
// variants that other exporters write: int32 ids, other names for the KV
// cache, one cache tensor for every layer. They change m in place, keep
// what it computes, and validate it.

// Int32Inputs declares the named int64 inputs of m int32, as TF and old
// PyTorch exports declare ids and masks, each read through a Cast to
// int64 (node /<name>/Cast) so that the graph computes what it did.
func Int32Inputs(m *graph.Model, names ...string) error {
	for _, name := range names {
		in := m.Input(name)
		if in == nil {
			return errorf("int32 inputs: the model has no input %q", name)
		}
		tt := in.GetType().GetTensorType()
		if dtype.Type(tt.GetElemType()) != dtype.Int64 {
			return errorf("int32 inputs: %q is %s, not int64", name, dtype.Type(tt.GetElemType()))
		}
		tt.ElemType = int32(dtype.Int32)
		cast := m.UniqueName(name + "_int64")
		n := m.NewNode("Cast", m.UniqueName("/"+name+"/Cast"), []string{name}, []string{cast}, graph.AttrInt("to", int64(dtype.Int64)))
		m.ReplaceUses(name, cast, n)
	}
	return finishVariant(m, "int32 inputs")
}

// perLayerCache matches the cache names that Llama, GPT2 and Hybrid give.
var perLayerCache = regexp.MustCompile(`^(past_key_values|present)\.(\d+)\.(key|value)$`)

// WhisperCacheNames renames m's KV cache as ONNX Runtime's Whisper
// exports name a decoder's self-attention cache: past_key_values.{i}.key
// becomes past_key_self_{i}, .value past_value_self_{i}, and the outputs
// present.{i}.key and .value present_key_self_{i} and present_value_self_{i}.
func WhisperCacheNames(m *graph.Model) error {
	g := m.Graph()
	renames := map[string]string{}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output} {
		for _, v := range list {
			if sub := perLayerCache.FindStringSubmatch(v.Name); sub != nil {
				side := "past"
				if sub[1] == "present" {
					side = "present"
				}
				renames[v.Name] = fmt.Sprintf("%s_%s_self_%s", side, sub[3], sub[2])
			}
		}
	}
	if len(renames) == 0 {
		return errorf("whisper cache names: the model has no past_key_values.{i}.key/value")
	}
	renameValues(m, renames)
	return finishVariant(m, "whisper cache names")
}

// SinglePast replaces m's per-layer cache (past_key_values.{i}.key and
// .value, [batch, kv_heads, past, head_dim]) by one input past [2·layers,
// batch, kv_heads, past, head_dim], layer i's key at 2i and value at
// 2i+1, and its present outputs by one output present of the same layout:
// the layout of exports that keep one cache tensor for the whole model.
func SinglePast(m *graph.Model) error {
	g := m.Graph()
	type kv struct{ key, value *onnxpb.ValueInfoProto }
	past, present := map[int]*kv{}, map[int]*kv{}
	collect := func(list []*onnxpb.ValueInfoProto, into map[int]*kv, side string) {
		for _, v := range list {
			sub := perLayerCache.FindStringSubmatch(v.Name)
			if sub == nil || sub[1] != side {
				continue
			}
			i, _ := strconv.Atoi(sub[2])
			if into[i] == nil {
				into[i] = &kv{}
			}
			if sub[3] == "key" {
				into[i].key = v
			} else {
				into[i].value = v
			}
		}
	}
	collect(g.Input, past, "past_key_values")
	collect(g.Output, present, "present")
	layers := len(past)
	if layers == 0 || len(present) != layers {
		return errorf("single past: want past_key_values.{i}.key/value inputs and present.{i} outputs for the same layers")
	}
	elem, dims, _ := graph.ValueDims(past[0].key)
	pastDims := append([]graph.Dim{sized(2 * layers)}, dims...)
	_, outDims, _ := graph.ValueDims(present[0].key)
	presentDims := append([]graph.Dim{sized(2 * layers)}, outDims...)

	b := graph.NewBuilder(m, graph.BuilderOptions{Scope: "/past", Outputs: graph.OutputsAfterNode})
	var parts []string
	for i := range layers {
		if past[i] == nil || present[i] == nil || past[i].key == nil || past[i].value == nil {
			return errorf("single past: layer %d of %d has no key or value", i, layers)
		}
		for j, v := range []*onnxpb.ValueInfoProto{past[i].key, past[i].value} {
			m.RemoveInput(v.Name)
			idx := b.Initializer(fmt.Sprintf("/past/index_%d", 2*i+j), graph.NewInt64Tensor("", nil, []int64{int64(2*i + j)}))
			b.NodeTo("", "Gather", []string{"past", idx}, []string{v.Name}, graph.AttrInt("axis", 0))
		}
		for _, v := range []*onnxpb.ValueInfoProto{present[i].key, present[i].value} {
			m.RemoveOutput(v.Name)
			parts = append(parts, b.In("present").Op("Unsqueeze", []string{v.Name, b.Int64s(0)}))
		}
	}
	b.In("present").NodeTo("", "Concat", parts, []string{"present"}, graph.AttrInt("axis", 0))
	m.AddInput(graph.SymbolicTensorInfo("past", elem, pastDims))
	m.AddOutput(graph.SymbolicTensorInfo("present", elem, presentDims))
	return finishVariant(m, "single past")
}

// renameValues renames values of m's graph (inputs, outputs, node inputs
// and outputs) as renames says.
func renameValues(m *graph.Model, renames map[string]string) {
	g := m.Graph()
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, v := range list {
			if to, ok := renames[v.Name]; ok {
				v.Name = to
			}
		}
	}
	for _, n := range g.Node {
		for _, names := range [][]string{n.Input, n.Output} {
			for i, x := range names {
				if to, ok := renames[x]; ok {
					names[i] = to
				}
			}
		}
	}
	m.Reindex()
}

// finishVariant sorts and checks m after a change.
func finishVariant(m *graph.Model, what string) error {
	if err := m.SortNodes(); err != nil {
		return errorf("%s: %w", what, err)
	}
	if err := m.Validate(); err != nil {
		return errorf("%s: built an invalid graph: %w", what, err)
	}
	return nil
}
