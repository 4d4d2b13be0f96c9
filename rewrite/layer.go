package rewrite

import (
	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// The kinds of layer that take LoRA, as Linear.Kind and Site.Kind name
// them. HF PEFT adapts the same three: nn.Linear, nn.Embedding and
// nn.Conv1d/Conv2d.
const (
	KindLinear    = ""          // MatMul or Gemm
	KindEmbedding = "embedding" // Gather of a table (embedding_layer.go)
	KindConv      = "conv"      // Conv (conv.go)
)

// kindOrLinear names kind for fallback module names and messages.
func kindOrLinear(kind string) string {
	if kind == KindLinear {
		return "linear"
	}
	return kind
}

// FindLayers returns every layer of m that LoRA adapts: the linear layers
// of FindLinears first, then the embeddings (a Gather on axis 0 of a 2-D
// floating-point initializer) and the convolutions (a Conv whose weight is
// an initializer), each in topological order. Module names follow
// FindLinears' rule; a nameless layer falls back to "embedding_<i>" or
// "conv_<i>".
func FindLayers(m *graph.Model) ([]Linear, error) {
	order, err := baseNodes(m)
	if err != nil {
		return nil, err
	}
	linears := linearsIn(m, order)
	var more []Linear
	count := map[string]int{}
	for _, n := range order {
		l, ok := otherLayerOf(m, n)
		if !ok {
			continue
		}
		nameLayer(&l, count[l.Kind])
		count[l.Kind]++
		more = append(more, l)
	}
	all := append(linears, more...)
	dedupeModules(all)
	return all, nil
}

// layerOf reports whether n is a layer of any kind and describes it.
func layerOf(m *graph.Model, n *onnxpb.NodeProto) (Linear, bool) {
	if l, ok := linearOf(m, n); ok {
		return l, true
	}
	return otherLayerOf(m, n)
}

// otherLayerOf reports whether n is an embedding or a convolution.
func otherLayerOf(m *graph.Model, n *onnxpb.NodeProto) (Linear, bool) {
	if l, ok := embeddingOf(m, n); ok {
		return l, true
	}
	return convOf(m, n)
}

// activation returns the value that l's branch reads from the base node
// n: the token ids of an embedding, the activation of the others. It is
// read from n itself, as an earlier branch may have re-routed it.
func (l Linear) activation(n *onnxpb.NodeProto) string {
	if l.Kind == KindEmbedding {
		return n.Input[1]
	}
	return n.Input[0]
}

// down adds the first factor of l's branch on x and returns h: x·A for
// a linear layer, A's rows for an embedding, the convolution by A for a
// convolution.
func (b *loraGraph) down(l Linear, g *graph.Builder, x string) string {
	switch l.Kind {
	case KindEmbedding:
		return g.Op("Gather", []string{b.site.A, x}, graph.AttrInt("axis", 0))
	case KindConv:
		return g.Op("Conv", []string{x, b.site.A}, convAttrs(l.Node)...)
	}
	return g.Op("MatMul", []string{x, b.site.A})
}

// up adds the second factor on h, reading B as bFull: h·B, or the 1×1
// convolution by B.
func (b *loraGraph) up(l Linear, g *graph.Builder, h, bFull string) string {
	if l.Kind == KindConv {
		return g.Op("Conv", []string{h, bFull})
	}
	return g.Op("MatMul", []string{h, bFull})
}

// checkKind reports what LoRA on a layer of l's kind cannot do: a fused
// projection's parts outside linear layers, and grouped convolutions.
func checkKind(l Linear, fused bool) error {
	if l.Kind == KindLinear {
		return nil
	}
	switch {
	case fused:
		return layerErr(l, "enable_lora_list applies to fused linear projections, not to the %s layer", kindOrLinear(l.Kind))
	case l.Kind == KindConv && graph.IntAttr(l.Node, "group", 1) != 1:
		return layerErr(l, "a grouped convolution (group %d): LoRA adapts Conv layers with group 1", graph.IntAttr(l.Node, "group", 1))
	}
	return nil
}

// kindOfWeights names the kind of layer that adapter factors w belong to.
func kindOfWeights(w adapter.LoRAWeights) string {
	switch {
	case w.Embedding:
		return "an embedding's"
	case w.Conv():
		return "a convolution's"
	}
	return "a linear layer's"
}

// articled names a layer kind with its article, for messages.
func articled(kind string) string {
	switch kind {
	case KindEmbedding:
		return "an embedding"
	case KindConv:
		return "a convolution"
	}
	return "a linear layer"
}
