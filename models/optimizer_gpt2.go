package models

import (
	"fmt"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// optimizedGPT2 builds GPT2(c) for Producer TransformerOptimizer, the
// layout of ONNX Runtime's own GPT-2 export (models/gpt2 in its
// transformers tools) after the optimizer: inputs input_ids,
// position_ids and attention_mask [batch, past+seq] (int64) and, unless
// NoCache, past_{i} [2, batch, heads, past, head_dim]; outputs logits and
// present_{i} [2, batch, heads, past+seq, head_dim]. c has its defaults
// and is valid.
func optimizedGPT2(c GPT2Config) (*graph.Model, error) {
	ox := newOptimized("gpt2", c.Seed, c.InitStd, c.Optimizer)
	m := ox.Model()
	e, h, d := c.Hidden, c.Heads, c.HeadDim()
	eps := c.LayerNormEps
	unfused := c.Optimizer.Unfused

	m.AddInput(graph.SymbolicTensorInfo("input_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	m.AddInput(graph.SymbolicTensorInfo("position_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	m.AddInput(graph.SymbolicTensorInfo("attention_mask", dtype.Int64, []graph.Dim{batchDim, totalDim}))
	if !c.NoCache {
		for i := range c.Layers {
			m.AddInput(graph.SymbolicTensorInfo(fmt.Sprintf("past_%d", i), dtype.Float32, []graph.Dim{sized(2), batchDim, sized(h), pastDim, sized(d)}))
		}
	}

	top := ox.At("/transformer")
	wte := ox.weight("transformer.wte.weight", int64(c.VocabSize), int64(e))
	wpe := ox.weight("transformer.wpe.weight", int64(c.MaxPositions), int64(e))
	lnw, lnb := ox.normParams("transformer.h.0.ln_1", e)
	var x, residual, mask, allowed string
	if unfused {
		tok := top.In("wte").Op("Gather", []string{wte, "input_ids"})
		pe := top.In("wpe").Op("Gather", []string{wpe, "position_ids"})
		residual = top.Op("Add", []string{tok, pe})
		x = ox.layerNormTo(top.In("h.0").In("ln_1"), residual, lnw, lnb, eps, "")
		allowed, _ = ox.causalAllowed(top, "input_ids", "attention_mask")
	} else {
		ids, pos := ox.castInt32("input_ids"), ox.castInt32("position_ids")
		mask = ox.castInt32("attention_mask")
		name := ox.nodeName("EmbedLayerNormalization")
		n := &onnxpb.NodeProto{
			Name: name, Domain: "com.microsoft", OpType: "EmbedLayerNormalization",
			Input:     []string{ids, "", wte, wpe, "", lnw, lnb, "", pos},
			Output:    []string{name + "_output", name + "_dummy_mask_index", name + "_embedding_sum"},
			Attribute: []*onnxpb.AttributeProto{graph.AttrFloat("epsilon", float32(eps))},
		}
		m.AddNode(n)
		x, residual = n.Output[0], n.Output[2]
	}

	for i := range c.Layers {
		layer := top.In(fmt.Sprintf("h.%d", i))
		module := fmt.Sprintf("transformer.h.%d", i)
		attn, mlp := layer.In("attn"), layer.In("mlp")
		past, present := "", ""
		if !c.NoCache {
			past, present = fmt.Sprintf("past_%d", i), fmt.Sprintf("present_%d", i)
		}

		w := ox.weight(module+".attn.c_attn.weight", int64(e), int64(3*e))
		b := ox.weight(module+".attn.c_attn.bias", int64(3*e))
		name := ox.nodeName("GptAttention")
		var a string
		if unfused {
			a = ox.attentionTwin(attn, x, w, b, past, present, allowed, e, h)
		} else {
			in, out := []string{x, w, b, mask}, []string{name + "_output"}
			if past != "" {
				in, out = append(in, past), append(out, present)
			}
			m.AddNode(&onnxpb.NodeProto{
				Name: name, Domain: "com.microsoft", OpType: "Attention", Input: in, Output: out,
				Attribute: []*onnxpb.AttributeProto{graph.AttrInt("num_heads", int64(h)), graph.AttrInt("unidirectional", 1)},
			})
			a = out[0]
		}
		wo := ox.weight(module+".attn.c_proj.weight", int64(e), int64(e))
		bo := ox.weight(module+".attn.c_proj.bias", int64(e))
		mm := &onnxpb.NodeProto{Name: name + "_matmul", OpType: "MatMul", Input: []string{a, wo}, Output: []string{name + "_matmul_output"}}
		m.AddNode(mm)
		ln2w, ln2b := ox.normParams(module+".ln_2", e)
		x, residual = ox.skipLayerNorm(layer.In("ln_2"), mm.Output[0], residual, ln2w, ln2b, bo, eps,
			"/transformer/h."+strconv.Itoa(i)+"/ln_2/LayerNormalization_output_0", "/transformer/h."+strconv.Itoa(i)+"/Add_output_0")

		wf := ox.weight(module+".mlp.c_fc.weight", int64(e), int64(c.Intermediate))
		bf := ox.weight(module+".mlp.c_fc.bias", int64(c.Intermediate))
		f := mlp.In("c_fc").Op("MatMul", []string{x, wf})
		f = ox.biasGelu(mlp.In("act"), f, bf, true, "/transformer/h."+strconv.Itoa(i)+"/mlp/act/Mul_3_output_0")
		wp := ox.weight(module+".mlp.c_proj.weight", int64(c.Intermediate), int64(e))
		bp := ox.weight(module+".mlp.c_proj.bias", int64(e))
		f = mlp.In("c_proj").Op("MatMul", []string{f, wp})

		next, out, sum := "transformer.ln_f", "/transformer/ln_f/LayerNormalization_output_0", ""
		if i+1 < c.Layers {
			next = fmt.Sprintf("transformer.h.%d.ln_1", i+1)
			out, sum = fmt.Sprintf("/transformer/h.%d/ln_1/LayerNormalization_output_0", i+1), "/transformer/h."+strconv.Itoa(i)+"/Add_1_output_0"
		}
		nw, nb := ox.normParams(next, e)
		x, residual = ox.skipLayerNorm(layer, f, residual, nw, nb, bp, eps, out, sum)
	}
	head := transposeInit(m.Initializer(wte), "lm_head.weight")
	m.AddInitializer(head)
	opTo(ox.At("/lm_head"), "logits", "MatMul", []string{x, head.Name})

	m.AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(c.VocabSize)}))
	if !c.NoCache {
		for i := range c.Layers {
			m.AddOutput(graph.SymbolicTensorInfo(fmt.Sprintf("present_%d", i), dtype.Float32, []graph.Dim{sized(2), batchDim, sized(h), totalDim, sized(d)}))
		}
	}
	return ox.finish("gpt2")
}
