package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// com.microsoft EmbedLayerNormalization, the embeddings and first
// LayerNorm that ONNX Runtime's transformer optimizer fuses BERT's and
// GPT-2's inputs into, decomposed exactly into standard ops.

func init() {
	register("com.microsoft", "EmbedLayerNormalization", entry{decompose: decomposeEmbedLayerNorm, infer: inferEmbedLayerNorm})
}

// inferEmbedLayerNorm: the output and the embedding sum [B, S, E] in the
// word embedding's type, and mask_index [B] int32.
func inferEmbedLayerNorm(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	ids, word := f.in(n, 0), f.in(n, 2)
	s := unknownShape()
	batch := f.freshDim()
	if ids.shape.rank() == 2 && word.shape.rank() == 2 {
		s = rankShape(ids.shape.dims[0], ids.shape.dims[1], word.shape.dims[1])
		batch = ids.shape.dims[0]
	}
	outs := []*tinfo{{elem: word.elem, shape: s}}
	if len(n.Output) > 1 {
		outs = append(outs, &tinfo{elem: dtype.Int32, shape: rankShape(batch)})
	}
	if len(n.Output) > 2 {
		outs = append(outs, &tinfo{elem: word.elem, shape: s})
	}
	return outs
}

// decomposeEmbedLayerNorm writes EmbedLayerNormalization out:
//
//	sum = word[input_ids] + position[position_ids] (+ segment[segment_ids])
//	output = LayerNormalization(sum, gamma, beta, epsilon)
//	mask_index = Σ mask over each row (int32; 0 without a mask)
//	embedding_sum = sum
//
// position_ids [B, S] or [1, S] default to 0 … S−1.
func decomposeEmbedLayerNorm(e *emitter, n *onnxpb.NodeProto) {
	ids, seg := inputOr(n, 0), inputOr(n, 1)
	word, pos, segEmb := inputOr(n, 2), inputOr(n, 3), inputOr(n, 4)
	gamma, beta, mask, posIDs := inputOr(n, 5), inputOr(n, 6), inputOr(n, 7), inputOr(n, 8)
	switch {
	case ids == "" || word == "" || pos == "" || gamma == "" || beta == "":
		e.fail("input_ids, the word and position embeddings, gamma and beta are required")
		return
	case (seg == "") != (segEmb == ""):
		e.fail("segment_ids and segment_embedding must be given together")
		return
	}
	sum := e.op("Gather", []string{word, ids})
	var p string
	if posIDs != "" {
		p = e.op("Gather", []string{pos, posIDs})
	} else {
		steps := e.op("Range", []string{e.int0(0), e.squeeze(e.dimOf(ids, 1), 0), e.int0(1)})
		p = e.op("Gather", []string{pos, steps})
	}
	sum = e.add(sum, p)
	if seg != "" {
		sum = e.add(sum, e.op("Gather", []string{segEmb, seg}))
	}
	eps := graph.FloatAttr(n, "epsilon", 1e-12)
	e.identityTo(e.op("LayerNormalization", []string{sum, gamma, beta}, graph.AttrInt("axis", -1), graph.AttrFloat("epsilon", eps)), n.Output[0])
	if len(n.Output) > 1 && n.Output[1] != "" {
		var idx string
		if mask != "" {
			idx = e.cast(e.reduceSum(e.cast(mask, dtype.Int64), []int64{1}, false), dtype.Int32)
		} else {
			idx = e.op("ConstantOfShape", []string{e.dimOf(ids, 0)}, graph.AttrTensor("value", &onnxpb.TensorProto{DataType: int32(dtype.Int32), Dims: []int64{1}, Int32Data: []int32{0}}))
		}
		e.identityTo(idx, n.Output[1])
	}
	if len(n.Output) > 2 && n.Output[2] != "" {
		e.identityTo(sum, n.Output[2])
	}
}
