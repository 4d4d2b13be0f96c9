package models

import (
	"cmp"
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// BERTConfig sizes a BERT-style encoder with a sequence-classification
// head. Zero values of the optional fields take the defaults given beside
// them.
type BERTConfig struct {
	Core
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

	// InputNames names the inputs as other exporters do (TF's input_mask
	// and segment_ids, say); empty fields keep HF's names.
	InputNames BERTInputNames
	// IDType is the element type of the ids, mask and token types:
	// dtype.Int64 (also dtype.Undefined) or dtype.Int32, as TF and old
	// PyTorch exports have them.
	IDType dtype.Type
	// Head is the model's head: BERTSequenceClassification (also ""),
	// BERTMaskedLM or BERTTokenClassification.
	Head BERTHead

	// Producer is whose export the graph imitates: Optimum (the default)
	// or TransformerOptimizer. The weights' values do not depend on it.
	Producer Producer
	// Optimizer shapes a TransformerOptimizer graph; Optimum ignores it.
	Optimizer OptimizerOptions
}

// BERTTiny is the size the tests use: hidden 16, 2 layers, 4 heads,
// vocabulary 32, 3 labels.
func BERTTiny() BERTConfig {
	return BERTConfig{Core: Core{VocabSize: 32, Hidden: 16, Layers: 2, Heads: 4, Seed: 1}, Intermediate: 40, MaxPositions: 64, NumLabels: 3}
}

// BERTMini is a demo size: hidden 64, 2 layers, 4 heads, vocabulary 256.
func BERTMini() BERTConfig {
	return BERTConfig{Core: Core{VocabSize: 256, Hidden: 64, Layers: 2, Heads: 4, Seed: 1}, MaxPositions: 128}
}

// BERTBase has bert-base-uncased's sizes, for benchmarks: hidden 768, 12
// layers, 12 heads, MLP 3072, vocabulary 30522 (about 110M parameters).
func BERTBase() BERTConfig {
	return BERTConfig{Core: Core{VocabSize: 30522, Hidden: 768, Layers: 12, Heads: 12, Seed: 1}, Intermediate: 3072, MaxPositions: 512}
}

func (c BERTConfig) withDefaults() BERTConfig {
	c.Intermediate = cmp.Or(c.Intermediate, 4*c.Hidden)
	c.MaxPositions = cmp.Or(c.MaxPositions, 512)
	c.TypeVocab = cmp.Or(c.TypeVocab, 2)
	c.NumLabels = cmp.Or(c.NumLabels, 2)
	c.LayerNormEps = cmp.Or(c.LayerNormEps, 1e-12)
	if c.IDType == dtype.Undefined {
		c.IDType = dtype.Int64
	}
	c.Head = cmp.Or(c.Head, BERTSequenceClassification)
	c.InputNames = c.InputNames.withDefaults()
	c.InitStd = cmp.Or(c.InitStd, defaultInitStd)
	return c
}

// Validate reports a config that cannot be built.
func (c BERTConfig) Validate() error {
	c = c.withDefaults()
	if err := c.Core.validate("bert"); err != nil {
		return err
	}
	switch {
	case c.Intermediate <= 0 || c.MaxPositions <= 0 || c.TypeVocab <= 0 || c.NumLabels <= 0:
		return errorf("bert: sizes must be positive: %+v", c)
	case c.LayerNormEps < 0:
		return errorf("bert: LayerNormEps must not be negative")
	case c.IDType != dtype.Int64 && c.IDType != dtype.Int32:
		return errorf("bert: IDType %s: want int64 or int32", c.IDType)
	case c.Producer != Optimum && c.Producer != TransformerOptimizer:
		return errorf("bert: producer %s does not build BERT (optimum or transformer-optimizer)", c.Producer)
	case c.Producer == TransformerOptimizer && c.DecomposeLayerNorm:
		return errorf("bert: DecomposeLayerNorm shapes the Optimum layout; the transformer optimizer's has fused norms")
	case c.Producer == TransformerOptimizer && (c.InputNames != (BERTInputNames{}).withDefaults() || c.IDType != dtype.Int64 || c.Head != BERTSequenceClassification):
		return errorf("bert: the transformer-optimizer layout is built with HF's input names, int64 ids and the sequence-classification head only")
	}
	switch c.Head {
	case BERTSequenceClassification, BERTMaskedLM, BERTTokenClassification:
	default:
		return errorf("bert: head %q: want %q, %q or %q", c.Head, BERTSequenceClassification, BERTMaskedLM, BERTTokenClassification)
	}
	return nil
}

// NumParams returns the number of weights the model holds.
func (c BERTConfig) NumParams() int64 {
	c = c.withDefaults()
	e, f := int64(c.Hidden), int64(c.Intermediate)
	emb := int64(c.VocabSize+c.MaxPositions+c.TypeVocab)*e + 2*e
	perLayer := 4*(e*e+e) + 2*e + (e*f + f) + (f*e + e) + 2*e
	return emb + int64(c.Layers)*perLayer + c.headParams()
}

// BERT builds a BERT-style encoder with a sequence-classification head,
// named as an Optimum export of HuggingFace's BertForSequenceClassification
// (or, with Head, BertForMaskedLM or BertForTokenClassification).
//
// Inputs: input_ids [batch, seq] int64, attention_mask [batch, seq] int64
// and, with TokenTypeIDs, token_type_ids [batch, seq] int64, under the
// names and of the type that InputNames and IDType give. Output: logits
// [batch, num_labels], from the pooled first token (see BERTHead for the
// other heads).
//
// The linear layers of layer i are /bert/encoder/layer.{i}/attention/self/query
// (key, value), attention/output/dense, intermediate/dense and output/dense,
// each a MatMul node <scope>/MatMul and an Add <scope>/Add, reading
// bert.encoder.layer.{i}.attention.self.query.weight [in, out] and .bias;
// then /bert/pooler/dense and /classifier (bert.pooler.dense.weight,
// classifier.weight).
//
// With Producer TransformerOptimizer the graph is what ONNX Runtime's
// transformer optimizer makes of it instead: see OptimizerOptions.
func BERT(c BERTConfig) (*graph.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	if c.Producer == TransformerOptimizer {
		return optimizedBERT(c)
	}
	ex := newExporter("bert", dtype.Float32, c.Seed, c.InitStd, false)
	m := ex.Model()
	e, h, d := c.Hidden, c.Heads, c.HeadDim()
	ln := func(s *graph.Builder, module, x string) string {
		return ex.layerNorm(s, module, x, e, c.LayerNormEps, c.DecomposeLayerNorm)
	}

	names := c.InputNames
	m.AddInput(graph.SymbolicTensorInfo(names.IDs, c.IDType, []graph.Dim{batchDim, seqDim}))
	m.AddInput(graph.SymbolicTensorInfo(names.Mask, c.IDType, []graph.Dim{batchDim, seqDim}))
	if c.TokenTypeIDs {
		m.AddInput(graph.SymbolicTensorInfo(names.TokenTypes, c.IDType, []graph.Dim{batchDim, seqDim}))
	}

	top := ex.At("/bert")
	es := top.In("embeddings")
	word := ex.weight("bert.embeddings.word_embeddings.weight", int64(c.VocabSize), int64(e))
	posTable := ex.weight("bert.embeddings.position_embeddings.weight", int64(c.MaxPositions), int64(e))
	typeTable := ex.weight("bert.embeddings.token_type_embeddings.weight", int64(c.TypeVocab), int64(e))
	shape := es.Op("Shape", []string{names.IDs})
	types := names.TokenTypes
	if !c.TokenTypeIDs {
		zero := &onnxpb.TensorProto{DataType: int32(dtype.Int64), Dims: []int64{1}, RawData: make([]byte, 8)}
		types = es.Op("ConstantOfShape", []string{shape}, graph.AttrTensor("value", zero))
	}
	seq := es.Op("Gather", []string{shape, ex.Int64(1)}, graph.AttrInt("axis", 0))
	pos := es.Op("Range", []string{ex.Int64(0), seq, ex.Int64(1)})
	pos = es.Op("Unsqueeze", []string{pos, ex.Int64s(0)})
	x := es.In("word_embeddings").Op("Gather", []string{word, names.IDs})
	t := es.In("token_type_embeddings").Op("Gather", []string{typeTable, types})
	x = es.Op("Add", []string{x, t})
	p := es.In("position_embeddings").Op("Gather", []string{posTable, pos})
	x = es.Op("Add", []string{x, p})
	x = ln(es.In("LayerNorm"), "bert.embeddings.LayerNorm", x)

	// (1 − mask)·lowest, [batch, 1, 1, seq]
	mask := top.Op("Unsqueeze", []string{names.Mask, ex.Int64s(1, 2)})
	mask = top.Op("Cast", []string{mask}, graph.AttrInt("to", int64(ex.elem)))
	mask = top.Op("Sub", []string{ex.Scalar(ex.elem, 1), mask})
	mask = top.Op("Mul", []string{mask, ex.Scalar(ex.elem, lowest(ex.elem))})

	for i := range c.Layers {
		layer := top.In(fmt.Sprintf("encoder/layer.%d", i))
		module := fmt.Sprintf("bert.encoder.layer.%d", i)
		self := layer.In("attention/self")

		q := ex.linear(self.In("query"), module+".attention.self.query", x, e, e, true, "")
		k := ex.linear(self.In("key"), module+".attention.self.key", x, e, e, true, "")
		v := ex.linear(self.In("value"), module+".attention.self.value", x, e, e, true, "")
		a := ex.attention(self, ex.splitHeads(self, q, h, d), ex.splitHeads(self, k, h, d), ex.splitHeads(self, v, h, d), mask, d, true)
		a = ex.mergeHeads(self, a, e)
		out := layer.In("attention/output")
		a = ex.linear(out.In("dense"), module+".attention.output.dense", a, e, e, true, "")
		a = out.Op("Add", []string{a, x})
		x = ln(out.In("LayerNorm"), module+".attention.output.LayerNorm", a)

		f := ex.linear(layer.In("intermediate/dense"), module+".intermediate.dense", x, e, c.Intermediate, true, "")
		f = ex.geluErf(layer.In("intermediate/intermediate_act_fn"), f)
		out = layer.In("output")
		f = ex.linear(out.In("dense"), module+".output.dense", f, c.Intermediate, e, true, "")
		f = out.Op("Add", []string{f, x})
		x = ln(out.In("LayerNorm"), module+".output.LayerNorm", f)
	}

	ex.bertHead(c, top, x)
	return ex.finish("bert")
}
