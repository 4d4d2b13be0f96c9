package models

import (
	"math"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// OptimizerOptions shape a GPT-2 or BERT graph laid out as ONNX Runtime's
// transformer optimizer (onnxruntime/python/tools/transformers, its
// fusion_*.py) leaves an export:
//
//   - The embeddings and the first LayerNorm are one com.microsoft
//     EmbedLayerNormalization node EmbedLayerNormalization_0 reading
//     input_ids (and position_ids, token type ids) cast to int32 (the casts
//     write input_ids_int32, …). GPT-2's also writes the embedding sum
//     (EmbedLayerNormalization_0_embedding_sum), the first residual.
//   - Each attention block is one com.microsoft Attention node with the
//     packed QKV projection: GptAttention_{i} (GPT-2, unidirectional=1,
//     reading transformer.h.{i}.attn.c_attn.weight and .bias, past_{i}
//     [2, batch, heads, past, head_dim] in and present_{i} out) or
//     Attention_{i} (BERT, reading Attention_{i}_qkv_weight [hidden,
//     3·hidden] and Attention_{i}_qkv_bias, the query, key and value
//     weights side by side).
//   - Each residual Add and the LayerNorm after it are one com.microsoft
//     SkipLayerNormalization SkipLayerNorm_{n} that also adds the bias of
//     the projection before it (its input 4) and passes the sum on as its
//     output 3; the projection itself is left a MatMul
//     (GptAttention_{i}_matmul for GPT-2's attention output, the
//     exporter's /transformer/h.{i}/mlp/c_fc/MatMul elsewhere).
//   - The MLP activation takes the c_fc or intermediate bias: com.microsoft
//     FastGelu(x, bias) for GPT-2's tanh GELU, BiasGelu(x, bias) for
//     BERT's erf GELU (FastGelu_AddBias_{n}, Gelu_AddBias_{n}).
//
// Weights keep the values, and where the optimizer keeps a weight its
// name, that the Optimum layout of the same config holds.
type OptimizerOptions struct {
	// RawMask gives BERT's Attention nodes the 2-D attention mask cast to
	// int32, as the optimizer does with use_raw_attention_mask, rather
	// than mask_index, the valid length of each row, which
	// EmbedLayerNormalization sums from the mask (the optimizer's default
	// for BERT; it assumes padding on the right). GPT-2's Attention always
	// reads the raw mask, as the optimizer writes it.
	RawMask bool
	// Unfused builds the standard-op twin: the same nodes and weights
	// under the same names, except that each fused op is written out in
	// standard ops (Gather and LayerNormalization for the embeddings, the
	// packed projection split into heads with a mask of −10000 where a key
	// may not be seen, Add and LayerNormalization for the skip norms, the
	// GELU formulas). At every position that is not padding it computes
	// what the fused graph computes.
	Unfused bool
}

// maskFilter is what Attention adds to the score of a key that a query
// may not see: its mask_filter_value, −10000 unless set.
const maskFilter = -10000

// optimized lays out one transformer-optimizer graph: exporter-named nodes
// through the embedded exporter, optimizer-named ones through node.
type optimized struct {
	*exporter
	o      OptimizerOptions
	counts map[string]int // create_node_name's counter per prefix
}

// newOptimized starts a transformer-optimizer graph.
func newOptimized(graphName string, seed uint64, std float64, o OptimizerOptions) *optimized {
	ox := &optimized{exporter: newExporter(graphName, dtype.Float32, seed, std, false), o: o, counts: map[string]int{}}
	if !o.Unfused {
		ox.Model().SetOpset("com.microsoft", 1)
	}
	return ox
}

// nodeName returns prefix_N, N counting the nodes of that prefix, as the
// optimizer's create_node_name numbers its fused nodes.
func (ox *optimized) nodeName(prefix string) string {
	n := ox.counts[prefix]
	ox.counts[prefix] = n + 1
	return ox.Model().UniqueName(prefix + "_" + strconv.Itoa(n))
}

// node adds an optimizer-made node named prefix_N.
func (ox *optimized) node(prefix, domain, op string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{Name: ox.nodeName(prefix), Domain: domain, OpType: op, Input: inputs, Output: outputs, Attribute: attrs}
	ox.Model().AddNode(n)
	return n
}

// castInt32 casts the int64 input x to int32 as the optimizer does,
// writing x_int32.
func (ox *optimized) castInt32(x string) string {
	return ox.node("Cast", "", "Cast", []string{x}, []string{x + "_int32"}, graph.AttrInt("to", int64(dtype.Int32))).Output[0]
}

// normParams adds a LayerNorm's weight and bias, module.weight and
// module.bias, drawn as exporter.layerNorm draws them.
func (ox *optimized) normParams(module string, width int) (w, b string) {
	w = ox.normal(module+".weight", []int64{int64(width)}, 1, normStd)
	b = ox.normal(module+".bias", []int64{int64(width)}, 0, normStd)
	return w, b
}

// layerNormTo adds a LayerNormalization of x in scope s writing out ("" for
// a fresh name).
func (ox *optimized) layerNormTo(s *graph.Builder, x, w, b string, eps float64, out string) string {
	return opTo(s, out, "LayerNormalization", []string{x, w, b}, graph.AttrInt("axis", -1), graph.AttrFloat("epsilon", float32(eps)))
}

// skipLayerNorm adds LayerNorm(x + bias + skip) and returns it and the
// sum: a SkipLayerNormalization node SkipLayerNorm_N writing out and, with
// sum not "", the sum; or, in the twin, Add, Add and LayerNormalization in
// scope s under the same output names.
func (ox *optimized) skipLayerNorm(s *graph.Builder, x, skip, gamma, beta, bias string, eps float64, out, sum string) (string, string) {
	if ox.o.Unfused {
		t := s.Op("Add", []string{x, bias})
		sum = opTo(s, sum, "Add", []string{t, skip})
		return ox.layerNormTo(s, sum, gamma, beta, eps, out), sum
	}
	outs := []string{out}
	if sum != "" {
		outs = append(outs, "", "", sum)
	}
	ox.node("SkipLayerNorm", "com.microsoft", "SkipLayerNormalization", []string{x, skip, gamma, beta, bias}, outs,
		graph.AttrFloat("epsilon", float32(eps)))
	return out, sum
}

// biasGelu adds GELU(x + bias) in scope s: FastGelu(x, bias) (tanh) or
// BiasGelu(x, bias) (erf) writing out, named as the optimizer names them,
// or, in the twin, Add and the formula.
func (ox *optimized) biasGelu(s *graph.Builder, x, bias string, tanh bool, out string) string {
	if ox.o.Unfused {
		t := s.Op("Add", []string{x, bias})
		if tanh {
			return ox.geluTanh(s, t)
		}
		return ox.geluErf(s, t)
	}
	prefix, op := "Gelu_AddBias", "BiasGelu"
	if tanh {
		prefix, op = "FastGelu_AddBias", "FastGelu"
	}
	return ox.node(prefix, "com.microsoft", op, []string{x, bias}, []string{out}).Output[0]
}

// attentionTwin writes com.microsoft Attention out in standard ops in
// scope s: qkv = x·W + b split into q, k and v, heads, past (stacked
// [2, batch, heads, past, head_dim], or "") joined in front of k and v,
// present (named presentName where not "") stacked again, and
// softmax(q·kᵀ/√head_dim + bias)·v with bias = −10000 where allowed is
// false. allowed is a bool [batch, 1, seq|1, total] value.
func (ox *optimized) attentionTwin(s *graph.Builder, x, w, b, past, presentName, allowed string, e, heads int) string {
	d := e / heads
	qkv := s.Op("Add", []string{s.Op("MatMul", []string{x, w}), b})
	parts := s.Node("", "Split", []string{qkv, ox.Int64s(int64(e), int64(e), int64(e))}, 3, graph.AttrInt("axis", -1)).Output
	q, k, v := ox.splitHeads(s, parts[0], heads, d), ox.splitHeads(s, parts[1], heads, d), ox.splitHeads(s, parts[2], heads, d)
	if past != "" {
		pk := s.Op("Gather", []string{past, ox.Int64(0)}, graph.AttrInt("axis", 0))
		pv := s.Op("Gather", []string{past, ox.Int64(1)}, graph.AttrInt("axis", 0))
		k = s.Op("Concat", []string{pk, k}, graph.AttrInt("axis", 2))
		v = s.Op("Concat", []string{pv, v}, graph.AttrInt("axis", 2))
	}
	if presentName != "" {
		z := ox.Int64s(0)
		opTo(s, presentName, "Concat", []string{s.Op("Unsqueeze", []string{k, z}), s.Op("Unsqueeze", []string{v, z})}, graph.AttrInt("axis", 0))
	}
	kt := s.Op("Transpose", []string{k}, graph.AttrInts("perm", 0, 1, 3, 2))
	sc := s.Op("Mul", []string{s.Op("MatMul", []string{q, kt}), ox.Scalar(dtype.Float32, 1/math.Sqrt(float64(d)))})
	sc = s.Op("Add", []string{sc, s.Op("Where", []string{allowed, ox.Scalar(dtype.Float32, 0), ox.Scalar(dtype.Float32, maskFilter)})})
	p := s.Op("Softmax", []string{sc}, graph.AttrInt("axis", -1))
	return ox.mergeHeads(s, s.Op("MatMul", []string{p, v}), e)
}
