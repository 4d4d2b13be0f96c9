package models

import (
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// optimizedBERT builds BERT(c) for Producer TransformerOptimizer; the
// inputs and outputs are the Optimum layout's. c has its defaults and is
// valid.
func optimizedBERT(c BERTConfig) (*graph.Model, error) {
	ox := newOptimized("bert", c.Seed, c.InitStd, c.Optimizer)
	m := ox.Model()
	e, h := c.Hidden, c.Heads
	eps := c.LayerNormEps
	unfused := c.Optimizer.Unfused

	m.AddInput(graph.SymbolicTensorInfo("input_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	m.AddInput(graph.SymbolicTensorInfo("attention_mask", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	if c.TokenTypeIDs {
		m.AddInput(graph.SymbolicTensorInfo("token_type_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	}

	top := ox.At("/bert")
	es := top.In("embeddings")
	word := ox.weight("bert.embeddings.word_embeddings.weight", int64(c.VocabSize), int64(e))
	posTable := ox.weight("bert.embeddings.position_embeddings.weight", int64(c.MaxPositions), int64(e))
	typeTable := ox.weight("bert.embeddings.token_type_embeddings.weight", int64(c.TypeVocab), int64(e))
	lnw, lnb := ox.normParams("bert.embeddings.LayerNorm", e)
	var x, attnMask, allowed string
	if unfused {
		shape := es.Op("Shape", []string{"input_ids"})
		types := "token_type_ids"
		if !c.TokenTypeIDs {
			zero := &onnxpb.TensorProto{DataType: int32(dtype.Int64), Dims: []int64{1}, RawData: make([]byte, 8)}
			types = es.Op("ConstantOfShape", []string{shape}, graph.AttrTensor("value", zero))
		}
		seq := es.Op("Gather", []string{shape, ox.Int64(1)}, graph.AttrInt("axis", 0))
		pos := es.Op("Range", []string{ox.Int64(0), seq, ox.Int64(1)})
		x = es.In("word_embeddings").Op("Gather", []string{word, "input_ids"})
		x = es.Op("Add", []string{x, es.In("position_embeddings").Op("Gather", []string{posTable, pos})})
		x = es.Op("Add", []string{x, es.In("token_type_embeddings").Op("Gather", []string{typeTable, types})})
		x = ox.layerNormTo(es.In("LayerNorm"), x, lnw, lnb, eps, "")
		// Keys a query may see, [batch, 1, 1, seq]: those the mask keeps
		// (raw), or those before the row's valid length (mask_index).
		var keep string
		if c.Optimizer.RawMask {
			keep = top.Op("Cast", []string{"attention_mask"}, graph.AttrInt("to", int64(dtype.Bool)))
		} else {
			n := top.Op("ReduceSum", []string{"attention_mask", ox.Int64s(1)}, graph.AttrInt("keepdims", 1))
			keep = top.Op("Less", []string{top.Op("Range", []string{ox.Int64(0), seq, ox.Int64(1)}), n})
		}
		allowed = top.Op("Unsqueeze", []string{keep, ox.Int64s(1, 2)})
	} else {
		ids := ox.castInt32("input_ids")
		var types string
		if c.TokenTypeIDs {
			types = ox.castInt32("token_type_ids")
		} else {
			shape := ox.node("Shape", "", "Shape", []string{ids}, []string{"input_shape"}).Output[0]
			zero := &onnxpb.TensorProto{DataType: int32(dtype.Int32), Dims: []int64{1}, RawData: make([]byte, 4)}
			types = ox.node("ConstantOfShape", "", "ConstantOfShape", []string{shape}, []string{"zeros_for_input_shape"}, graph.AttrTensor("value", zero)).Output[0]
		}
		mask := ox.castInt32("attention_mask")
		name := ox.nodeName("EmbedLayerNormalization")
		in := []string{ids, types, word, posTable, typeTable, lnw, lnb}
		out := []string{name + "_output", name + "_dummy_mask_index"}
		attnMask = mask
		if !c.Optimizer.RawMask {
			in, out[1] = append(in, mask), "mask_index"
			attnMask = out[1]
		}
		m.AddNode(&onnxpb.NodeProto{
			Name: name, Domain: "com.microsoft", OpType: "EmbedLayerNormalization", Input: in, Output: out,
			Attribute: []*onnxpb.AttributeProto{graph.AttrFloat("epsilon", float32(eps))},
		})
		x = out[0]
	}

	for i := range c.Layers {
		layer := top.In(fmt.Sprintf("encoder/layer.%d", i))
		module := fmt.Sprintf("bert.encoder.layer.%d", i)
		self := module + ".attention.self."
		name := ox.nodeName("Attention")
		w := ox.packedWeight(name+"_qkv_weight", []string{self + "query.weight", self + "key.weight", self + "value.weight"},
			e, []int{e, e, e}, 0, ox.std)
		b := ox.packedWeight(name+"_qkv_bias", []string{self + "query.bias", self + "key.bias", self + "value.bias"},
			0, []int{e, e, e}, 0, ox.std)
		var a string
		if unfused {
			a = ox.attentionTwin(layer.In("attention/self"), x, w, b, "", "", allowed, e, h)
		} else {
			a = name + "_output"
			m.AddNode(&onnxpb.NodeProto{
				Name: name, Domain: "com.microsoft", OpType: "Attention", Input: []string{x, w, b, attnMask}, Output: []string{a},
				Attribute: []*onnxpb.AttributeProto{graph.AttrInt("num_heads", int64(h))},
			})
		}

		lin := func(s *graph.Builder, module, x string, in, out int) (y, bias string) {
			w := ox.weight(module+".weight", int64(in), int64(out))
			return s.Op("MatMul", []string{x, w}), ox.weight(module+".bias", int64(out))
		}
		out := layer.In("attention/output")
		d, db := lin(out.In("dense"), module+".attention.output.dense", a, e, e)
		nw, nb := ox.normParams(module+".attention.output.LayerNorm", e)
		x, _ = ox.skipLayerNorm(out.In("LayerNorm"), d, x, nw, nb, db, eps,
			fmt.Sprintf("/bert/encoder/layer.%d/attention/output/LayerNorm/LayerNormalization_output_0", i), "")

		f, fb := lin(layer.In("intermediate/dense"), module+".intermediate.dense", x, e, c.Intermediate)
		f = ox.biasGelu(layer.In("intermediate/intermediate_act_fn"), f, fb, false,
			fmt.Sprintf("/bert/encoder/layer.%d/intermediate/intermediate_act_fn/Mul_1_output_0", i))
		out = layer.In("output")
		f, pb := lin(out.In("dense"), module+".output.dense", f, c.Intermediate, e)
		nw, nb = ox.normParams(module+".output.LayerNorm", e)
		x, _ = ox.skipLayerNorm(out.In("LayerNorm"), f, x, nw, nb, pb, eps,
			fmt.Sprintf("/bert/encoder/layer.%d/output/LayerNorm/LayerNormalization_output_0", i), "")
	}

	ox.sequenceClassifier(c, top, x)
	return ox.finish("bert")
}
