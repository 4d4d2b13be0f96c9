package models

import (
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// BERTConfig sizes a BERT-style encoder with a sequence-classification
// head. Zero values of the optional fields take the defaults given beside
// them.
type BERTConfig struct {
	VocabSize    int
	Hidden       int // model width; a multiple of Heads
	Layers       int
	Heads        int
	Intermediate int // 0 means 4·Hidden
	MaxPositions int // 0 means 512
	TypeVocab    int // token types; 0 means 2
	NumLabels    int // classes of the classifier; 0 means 2

	LayerNormEps float64 // 0 means 1e-12

	// TokenTypeIDs adds a token_type_ids [batch, seq] int64 input. Without
	// it every token has type 0.
	TokenTypeIDs bool
	// DecomposeLayerNorm writes LayerNorm as ReduceMean, Sub, Pow, … instead
	// of one LayerNormalization node.
	DecomposeLayerNorm bool

	Seed    uint64  // weights are a function of Seed alone
	InitStd float64 // standard deviation of linear and embedding weights; 0 means 0.02
}

// BERTTiny is the size the tests use: hidden 16, 2 layers, 4 heads,
// vocabulary 32, 3 labels.
func BERTTiny() BERTConfig {
	return BERTConfig{VocabSize: 32, Hidden: 16, Layers: 2, Heads: 4, Intermediate: 40, MaxPositions: 64, NumLabels: 3, Seed: 1}
}

// BERTMini is a demo size: hidden 64, 2 layers, 4 heads, vocabulary 256.
func BERTMini() BERTConfig {
	return BERTConfig{VocabSize: 256, Hidden: 64, Layers: 2, Heads: 4, MaxPositions: 128, Seed: 1}
}

// BERTBase has bert-base-uncased's sizes, for benchmarks: hidden 768, 12
// layers, 12 heads, MLP 3072, vocabulary 30522 (about 110M parameters).
func BERTBase() BERTConfig {
	return BERTConfig{VocabSize: 30522, Hidden: 768, Layers: 12, Heads: 12, Intermediate: 3072, MaxPositions: 512, Seed: 1}
}

func (c BERTConfig) withDefaults() BERTConfig {
	if c.Intermediate == 0 {
		c.Intermediate = 4 * c.Hidden
	}
	if c.MaxPositions == 0 {
		c.MaxPositions = 512
	}
	if c.TypeVocab == 0 {
		c.TypeVocab = 2
	}
	if c.NumLabels == 0 {
		c.NumLabels = 2
	}
	if c.LayerNormEps == 0 {
		c.LayerNormEps = 1e-12
	}
	if c.InitStd == 0 {
		c.InitStd = defaultInitStd
	}
	return c
}

// HeadDim returns the width of one attention head, Hidden/Heads.
func (c BERTConfig) HeadDim() int {
	if c.Heads == 0 {
		return 0
	}
	return c.Hidden / c.Heads
}

// Validate reports a config that cannot be built.
func (c BERTConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.VocabSize <= 0 || c.Hidden <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.Intermediate <= 0 ||
		c.MaxPositions <= 0 || c.TypeVocab <= 0 || c.NumLabels <= 0:
		return errorf("bert: sizes must be positive: %+v", c)
	case c.Hidden%c.Heads != 0:
		return errorf("bert: hidden %d is not a multiple of heads %d", c.Hidden, c.Heads)
	case c.InitStd < 0 || c.LayerNormEps < 0:
		return errorf("bert: InitStd and LayerNormEps must not be negative")
	}
	return nil
}

// NumParams returns the number of weights the model holds.
func (c BERTConfig) NumParams() int64 {
	c = c.withDefaults()
	e, f := int64(c.Hidden), int64(c.Intermediate)
	emb := int64(c.VocabSize+c.MaxPositions+c.TypeVocab)*e + 2*e
	perLayer := 4*(e*e+e) + 2*e + (e*f + f) + (f*e + e) + 2*e
	head := (e*e + e) + (e*int64(c.NumLabels) + int64(c.NumLabels))
	return emb + int64(c.Layers)*perLayer + head
}

// BERT builds a BERT-style encoder with a sequence-classification head,
// named as an Optimum export of HuggingFace's BertForSequenceClassification.
//
// Inputs: input_ids [batch, seq] int64, attention_mask [batch, seq] int64
// and, with TokenTypeIDs, token_type_ids [batch, seq] int64. Output: logits
// [batch, num_labels], from the pooled first token.
//
// The linear layers of layer i are /bert/encoder/layer.{i}/attention/self/query
// (key, value), attention/output/dense, intermediate/dense and output/dense,
// each a MatMul node <scope>/MatMul and an Add <scope>/Add, reading
// bert.encoder.layer.{i}.attention.self.query.weight [in, out] and .bias;
// then /bert/pooler/dense and /classifier (bert.pooler.dense.weight,
// classifier.weight).
func BERT(c BERTConfig) (*graph.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	b := newBuilder("bert", dtype.Float32, c.Seed, c.InitStd)
	m := b.m
	e, h, d := c.Hidden, c.Heads, c.HeadDim()
	ln := func(scope, module, x string) string {
		return b.layerNorm(scope, module, x, e, c.LayerNormEps, c.DecomposeLayerNorm)
	}

	m.AddInput(graph.SymbolicTensorInfo("input_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	m.AddInput(graph.SymbolicTensorInfo("attention_mask", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	if c.TokenTypeIDs {
		m.AddInput(graph.SymbolicTensorInfo("token_type_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	}

	const es = "/bert/embeddings"
	word := b.weight("bert.embeddings.word_embeddings.weight", int64(c.VocabSize), int64(e))
	posTable := b.weight("bert.embeddings.position_embeddings.weight", int64(c.MaxPositions), int64(e))
	typeTable := b.weight("bert.embeddings.token_type_embeddings.weight", int64(c.TypeVocab), int64(e))
	shape := b.op(es, "Shape", []string{"input_ids"})
	types := "token_type_ids"
	if !c.TokenTypeIDs {
		zero := &onnxpb.TensorProto{DataType: int32(dtype.Int64), Dims: []int64{1}, RawData: make([]byte, 8)}
		types = b.op(es, "ConstantOfShape", []string{shape}, graph.AttrTensor("value", zero))
	}
	seq := b.op(es, "Gather", []string{shape, b.int0(1)}, graph.AttrInt("axis", 0))
	pos := b.op(es, "Range", []string{b.int0(0), seq, b.int0(1)})
	pos = b.op(es, "Unsqueeze", []string{pos, b.ints(0)})
	x := b.op(es+"/word_embeddings", "Gather", []string{word, "input_ids"})
	t := b.op(es+"/token_type_embeddings", "Gather", []string{typeTable, types})
	x = b.op(es, "Add", []string{x, t})
	p := b.op(es+"/position_embeddings", "Gather", []string{posTable, pos})
	x = b.op(es, "Add", []string{x, p})
	x = ln(es+"/LayerNorm", "bert.embeddings.LayerNorm", x)

	// (1 − mask)·lowest, [batch, 1, 1, seq]
	mask := b.op("/bert", "Unsqueeze", []string{"attention_mask", b.ints(1, 2)})
	mask = b.op("/bert", "Cast", []string{mask}, graph.AttrInt("to", int64(b.elem)))
	mask = b.op("/bert", "Sub", []string{b.scalar(b.elem, 1), mask})
	mask = b.op("/bert", "Mul", []string{mask, b.scalar(b.elem, lowest(b.elem))})

	for i := range c.Layers {
		scope := fmt.Sprintf("/bert/encoder/layer.%d", i)
		module := fmt.Sprintf("bert.encoder.layer.%d", i)
		self := scope + "/attention/self"

		q := b.linear(self+"/query", module+".attention.self.query", x, e, e, true, "")
		k := b.linear(self+"/key", module+".attention.self.key", x, e, e, true, "")
		v := b.linear(self+"/value", module+".attention.self.value", x, e, e, true, "")
		a := b.attention(self, b.splitHeads(self, q, h, d), b.splitHeads(self, k, h, d), b.splitHeads(self, v, h, d), mask, d, true)
		a = b.mergeHeads(self, a, e)
		a = b.linear(scope+"/attention/output/dense", module+".attention.output.dense", a, e, e, true, "")
		a = b.op(scope+"/attention/output", "Add", []string{a, x})
		x = ln(scope+"/attention/output/LayerNorm", module+".attention.output.LayerNorm", a)

		f := b.linear(scope+"/intermediate/dense", module+".intermediate.dense", x, e, c.Intermediate, true, "")
		f = b.geluErf(scope+"/intermediate/intermediate_act_fn", f)
		f = b.linear(scope+"/output/dense", module+".output.dense", f, c.Intermediate, e, true, "")
		f = b.op(scope+"/output", "Add", []string{f, x})
		x = ln(scope+"/output/LayerNorm", module+".output.LayerNorm", f)
	}

	first := b.op("/bert/pooler", "Gather", []string{x, b.int0(0)}, graph.AttrInt("axis", 1))
	pooled := b.linear("/bert/pooler/dense", "bert.pooler.dense", first, e, e, true, "")
	pooled = b.op("/bert/pooler/activation", "Tanh", []string{pooled})
	b.linear("/classifier", "classifier", pooled, e, c.NumLabels, true, "logits")

	m.AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, sized(c.NumLabels)}))
	return b.finish("bert")
}
