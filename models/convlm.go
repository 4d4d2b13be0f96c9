package models

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// ConvLMConfig sizes ConvLM, a small language model made of the layer
// kinds besides linear ones that LoRA adapts: an embedding, a Conv1d and
// a Conv2d. Zero values of the optional fields take the defaults beside
// them.
type ConvLMConfig struct {
	VocabSize int
	Hidden    int // channels of both convolutions
	Kernel    int // width of both kernels; 0 means 3
	// Dilation is the Conv2d's dilation along the sequence; 0 means 2.
	Dilation int

	Seed    uint64  // weights are a function of Seed alone
	InitStd float64 // standard deviation of every weight; 0 means 0.3
}

// ConvLMTiny is the size the tests use: vocabulary 32, 8 channels, kernel 3.
func ConvLMTiny() ConvLMConfig {
	return ConvLMConfig{VocabSize: 32, Hidden: 8, Seed: 1}
}

// ConvLM builds a causal convolutional language model in float32, laid
// out as the PyTorch exporter writes nn.Embedding, nn.Conv1d and
// nn.Conv2d:
//
//	x = model.embed_tokens(input_ids)                 Gather      [batch, seq, hidden]
//	x = relu(model.conv1d(xᵀ))                        Conv        [batch, hidden, seq], kernel k, left pad k−1
//	x = relu(model.conv2d(x as [batch, hidden, 1, seq])) Conv     kernel 1×k, dilation 1×d, left pad d·(k−1)
//	logits = lm_head(xᵀ)                              MatMul      [batch, seq, vocab]
//
// Both convolutions pad on the left only, so position t sees tokens up to
// t: the model is causal. Nodes are /model/embed_tokens/Gather,
// /model/conv1d/Conv, /model/conv2d/Conv and /lm_head/MatMul; weights
// model.conv1d.weight [hidden, hidden, k] and model.conv2d.weight
// [hidden, hidden, 1, k], each conv with a bias. Input: input_ids [batch,
// seq] int64; output: logits. It imports opset 17.
func ConvLM(c ConvLMConfig) (*graph.Model, error) {
	if c.Kernel == 0 {
		c.Kernel = 3
	}
	if c.Dilation == 0 {
		c.Dilation = 2
	}
	if c.InitStd == 0 {
		c.InitStd = 0.3
	}
	if c.VocabSize <= 0 || c.Hidden <= 0 || c.Kernel < 1 || c.Dilation < 1 || c.InitStd < 0 {
		return nil, errorf("convlm: sizes must be positive: %+v", c)
	}
	ex := newExporter("convlm", dtype.Float32, c.Seed, c.InitStd, false)
	m := ex.Model()
	v, h, k, d := int64(c.VocabSize), int64(c.Hidden), int64(c.Kernel), int64(c.Dilation)
	m.AddInput(graph.SymbolicTensorInfo("input_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))

	top := ex.At("/model")
	emb := ex.weight("model.embed_tokens.weight", v, h)
	x := top.In("embed_tokens").Op("Gather", []string{emb, "input_ids"})
	x = top.Op("Transpose", []string{x}, graph.AttrInts("perm", 0, 2, 1))

	c1 := top.In("conv1d")
	x = c1.Op("Conv", []string{x, ex.weight("model.conv1d.weight", h, h, k), ex.weight("model.conv1d.bias", h)},
		graph.AttrInts("kernel_shape", k), graph.AttrInts("pads", k-1, 0))
	x = c1.Op("Relu", []string{x})

	c2 := top.In("conv2d")
	x = c2.Op("Unsqueeze", []string{x, ex.Int64s(2)})
	x = c2.Op("Conv", []string{x, ex.weight("model.conv2d.weight", h, h, 1, k), ex.weight("model.conv2d.bias", h)},
		graph.AttrInts("kernel_shape", 1, k), graph.AttrInts("dilations", 1, d), graph.AttrInts("pads", 0, d*(k-1), 0, 0))
	x = c2.Op("Relu", []string{x})
	x = c2.Op("Squeeze", []string{x, ex.Int64s(2)})
	x = top.Op("Transpose", []string{x}, graph.AttrInts("perm", 0, 2, 1))

	opTo(ex.At("/lm_head"), "logits", "MatMul", []string{x, ex.weight("lm_head.weight", h, v)})
	m.AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(c.VocabSize)}))
	return ex.finish("convlm")
}
