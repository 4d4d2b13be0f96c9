package rewrite

import (
	"slices"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// LoRA inside fused attention. Two producers keep q, k and v in one
// packed weight whose output columns are q, then k, then v, each part
// contiguous (not interleaved head by head, as PaddleNLP's fused weights
// are):
//
//   - ONNX Runtime's transformer optimizer puts the weight inside a
//     com.microsoft Attention node (input 1, [hidden, q+k+v], bias input
//     2; widths from qkv_hidden_sizes, else thirds). Such a node is a
//     linear layer of Op "Attention" whose output is not a value of the
//     graph, so its branch is on the weight side: the node reads
//     W + s·A·Bfull, which computes x·W + s·x·A·Bfull inside. Dropout on
//     x cannot be put there and is refused.
//   - The onnxruntime-genai model builder's qkv_proj MatMul feeds
//     GroupQueryAttention's packed query: parts of num_heads·d,
//     kv_num_heads·d and kv_num_heads·d columns, unequal where there are
//     fewer KV heads.
//
// With enable_lora_list, a layer of known part widths (Linear.PartWidths)
// gets PaddleNLP's MergedLoRALinear factors laid out for its contiguous
// parts: A [in, r·k], B [r, Σ enabled widths] (the enabled parts' columns
// in order), and Bfull [r·k, out] holds rows e·r … e·r+r−1 of part e at
// that part's columns, zero elsewhere. Without the list the whole packed
// weight gets one plain LoRA, as HF PEFT's on GPT-2's c_attn. Merge adds
// s·A·Bfull to the packed weight in place, so the merged model keeps the
// base's nodes.

// OpAttention is Linear.Op of a com.microsoft Attention layer.
const OpAttention = "Attention"

// attentionLinearOf describes Attention node n as a linear layer whose
// weight is the value w (n's input 1, or what injection replaced it
// with): a 2-D float initializer reached as weightChain allows, not
// transposed.
func attentionLinearOf(m *graph.Model, n *onnxpb.NodeProto, w string) (Linear, bool) {
	if len(n.Input) < 2 || len(n.Output) < 1 || n.Input[0] == "" || w == "" || m.Initializer(n.Input[0]) != nil {
		return Linear{}, false
	}
	path, ok := weightChain(m, w)
	if !ok || path.transposes != 0 {
		return Linear{}, false
	}
	l := path.linear(n, n.Input[0])
	l.In, l.Out = path.w.Dims[0], path.w.Dims[1]
	l.Bias = initializerBias(m, n)
	if sizes := graph.IntsAttr(n, "qkv_hidden_sizes"); len(sizes) == 3 {
		l.PartWidths = slices.Clone(sizes)
	} else if l.Out%3 == 0 {
		l.PartWidths = []int64{l.Out / 3, l.Out / 3, l.Out / 3}
	}
	if l.PartWidths != nil && l.PartWidths[0]+l.PartWidths[1]+l.PartWidths[2] != l.Out {
		l.PartWidths = nil
	}
	return l, true
}

// isAttentionNode reports whether n is com.microsoft Attention.
func isAttentionNode(n *onnxpb.NodeProto) bool {
	return n.OpType == OpAttention && n.Domain == "com.microsoft"
}

// packedQKVWidths returns the part widths of a MatMul layer whose output,
// directly or through the Add of its bias, is the packed query of a
// com.microsoft GroupQueryAttention (no separate key and value), or nil.
func packedQKVWidths(m *graph.Model, l Linear) []int64 {
	v := l.Output
	if l.Bias != "" && l.Op == "MatMul" {
		cs := m.Consumers(v)
		if len(cs) != 1 {
			return nil
		}
		v = cs[0].Output[0]
	}
	cs := m.Consumers(v)
	if len(cs) != 1 || cs[0].OpType != "GroupQueryAttention" || cs[0].Domain != "com.microsoft" || cs[0].Input[0] != v {
		return nil
	}
	g := cs[0]
	if len(g.Input) > 1 && g.Input[1] != "" {
		return nil
	}
	heads, kv := graph.IntAttr(g, "num_heads", 0), graph.IntAttr(g, "kv_num_heads", 0)
	if heads <= 0 || kv <= 0 || l.Out%(heads+2*kv) != 0 {
		return nil
	}
	d := l.Out / (heads + 2*kv)
	return []int64{heads * d, kv * d, kv * d}
}

// partOffsets returns where each part starts among the columns.
func partOffsets(widths []int64) []int64 {
	off := make([]int64, len(widths))
	for g := 1; g < len(widths); g++ {
		off[g] = off[g-1] + widths[g-1]
	}
	return off
}

// siteFullB expands B of site s, of rank r, to the [r·k, out] matrix the
// branch multiplies by: contiguous parts where s.Widths is set, else
// PaddleNLP's interleaved layout (fullB).
func siteFullB(b []float32, r int, s Site) []float32 {
	if s.Enable == nil || s.Widths == nil {
		return fullB(b, r, s.Enable, s.HeadDim, s.Out)
	}
	out := int(s.Out)
	off := partOffsets(s.Widths)
	idx := enabledParts(s.Enable)
	cols := int(s.BShape(int64(r))[1])
	full := make([]float32, r*len(idx)*out)
	src := 0 // B's first column of the current part
	for e, g := range idx {
		w := int(s.Widths[g])
		for i := 0; i < r; i++ {
			copy(full[(e*r+i)*out+int(off[g]):][:w], b[i*cols+src:][:w])
		}
		src += w
	}
	return full
}

// contiguousB adds the nodes that expand B [r, Σ enabled widths] to
// Bfull [r·k, out] for contiguous parts: each enabled part's columns,
// sliced out and padded with zeros to its place, stacked part by part.
func (b *loraGraph) contiguousB(l Linear) string {
	s := b.site
	sb := b.g.At(prefix(l)).In("lora_B")
	off := partOffsets(s.Widths)
	var rows []string
	src := int64(0)
	for _, g := range enabledParts(s.Enable) {
		w := s.Widths[g]
		part := sb.Op("Slice", []string{s.B, b.int64s(s.Module+".lora_B.start", src), b.int64s(s.Module+".lora_B.end", src+w), b.int64s(s.Module+".lora_B.axis", 1)})
		pads := []int64{0, off[g], 0, s.Out - off[g] - w}
		if b.opset >= 11 {
			part = sb.Op("Pad", []string{part, b.int64s(s.Module+".lora_B.pads", pads...)})
		} else {
			part = sb.Op("Pad", []string{part}, graph.AttrInts("pads", pads...))
		}
		rows = append(rows, part)
		src += w
	}
	if len(rows) == 1 {
		return rows[0]
	}
	return sb.Op("Concat", rows, graph.AttrInt("axis", 0))
}

// weightBranch adds the weight side of an Attention layer's LoRA: the
// node reads W + s·A·Bfull (in the layer's type) in place of W, or with
// DoRA (magnitude mag) its rescaled W' (doraWeight). The nodes read
// initializers only and go to the front of the graph.
func (b *loraGraph) weightBranch(l Linear, bFull string, mag []float32) {
	s := b.site
	pre := b.g.At(prefix(l))
	sa, sb := pre.In("lora_A"), pre.In("lora_B")
	d := sb.Op("MatMul", []string{s.A, bFull})
	if !b.asInputs && s.Scale != 1 {
		sc := b.scalar(s.Module+".lora_scaling", s.DType, float32(s.Scale))
		d = pre.In("lora_scaling").Op("Mul", []string{d, sc})
	}
	w := l.Node.Input[1]
	var sum string
	if s.Magnitude != "" {
		sum = b.doraWeight(l, pre, w, d, mag)
	} else {
		if s.DType != l.DType {
			d = sb.Op("Cast", []string{d}, graph.AttrInt("to", int64(l.DType)))
		}
		sum = sa.Op("Add", []string{w, d})
	}
	b.g.Model().SetNodeInput(l.Node, 1, sum)
	s.Output, s.BaseOutput, s.Sum = w, w, sum
}

// attentionSiteLinear finds the Attention layer of site s in an adapted
// model: the node that reads s.Sum.
func attentionSiteLinear(m *graph.Model, s Site) (Linear, bool) {
	for _, n := range m.Consumers(s.Sum) {
		if isAttentionNode(n) && len(n.Input) > 1 && n.Input[1] == s.Sum {
			l, ok := attentionLinearOf(m, n, s.Output)
			return l, ok && l.Weight == s.Weight
		}
	}
	return Linear{}, false
}

// siteLayer returns the layer that site s of an adapted model adapts,
// checking that it still reads s's weight: the node that writes
// s.BaseOutput, or for an Attention layer the node that reads s.Sum.
func siteLayer(m *graph.Model, s Site) (Linear, error) {
	if s.Op == OpAttention {
		l, ok := attentionSiteLinear(m, s)
		if !ok {
			return Linear{}, errorf("site %q: no Attention node reads %q, the weight %q with its update", s.Module, s.Sum, s.Weight)
		}
		return l, nil
	}
	base := m.Producer(s.BaseOutput)
	if base == nil {
		return Linear{}, errorf("site %q: no node writes %q", s.Module, s.BaseOutput)
	}
	l, ok := layerOf(m, base)
	if !ok || l.Weight != s.Weight {
		return Linear{}, errorf("site %q: node %q no longer reads weight %q", s.Module, base.Name, s.Weight)
	}
	if s.BaseInput != "" && l.Input == s.BaseInput {
		l.Input = s.Input // the activation, not the rows the branch feeds (dora_nbits.go)
	}
	return l, nil
}
