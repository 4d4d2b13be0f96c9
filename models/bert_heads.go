package models

import (
	"cmp"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// BERTHead is the head on top of a BERT encoder.
type BERTHead string

// The heads, as HuggingFace's model classes have them.
const (
	// BERTSequenceClassification is BertForSequenceClassification's: the
	// pooler over the first token and a classifier, logits [batch,
	// num_labels].
	BERTSequenceClassification BERTHead = "sequence-classification"
	// BERTMaskedLM is BertForMaskedLM's: cls.predictions.transform (dense,
	// GELU, LayerNorm) and cls.predictions.decoder, logits [batch, seq,
	// vocab], a prediction for every position.
	BERTMaskedLM BERTHead = "masked-lm"
	// BERTTokenClassification is BertForTokenClassification's: a classifier
	// on every position, logits [batch, seq, num_labels].
	BERTTokenClassification BERTHead = "token-classification"
)

// BERTInputNames names a BERT's inputs.
type BERTInputNames struct {
	IDs        string // "" means input_ids
	Mask       string // "" means attention_mask
	TokenTypes string // "" means token_type_ids
}

func (n BERTInputNames) withDefaults() BERTInputNames {
	n.IDs = cmp.Or(n.IDs, "input_ids")
	n.Mask = cmp.Or(n.Mask, "attention_mask")
	n.TokenTypes = cmp.Or(n.TokenTypes, "token_type_ids")
	return n
}

// TFBERTInputNames are the input names of Google's TF BERT and its ONNX
// exports (keras2onnx, tf2onnx): input_ids, input_mask, segment_ids.
func TFBERTInputNames() BERTInputNames {
	return BERTInputNames{IDs: "input_ids", Mask: "input_mask", TokenTypes: "segment_ids"}
}

// headParams returns the number of weights of c's head.
func (c BERTConfig) headParams() int64 {
	e, v, l := int64(c.Hidden), int64(c.VocabSize), int64(c.NumLabels)
	switch c.Head {
	case BERTMaskedLM:
		return (e*e + e) + 2*e + (e*v + v)
	case BERTTokenClassification:
		return e*l + l
	}
	return (e*e + e) + (e*l + l)
}

// bertHead adds c's head on the encoder's output x [batch, seq, hidden]
// and the logits output.
func (ex *exporter) bertHead(c BERTConfig, top *graph.Builder, x string) {
	m := ex.Model()
	e := c.Hidden
	switch c.Head {
	case BERTMaskedLM:
		pred := ex.At("/cls/predictions")
		tr := pred.In("transform")
		h := ex.linear(tr.In("dense"), "cls.predictions.transform.dense", x, e, e, true, "")
		h = ex.geluErf(tr.In("transform_act_fn"), h)
		h = ex.layerNorm(tr.In("LayerNorm"), "cls.predictions.transform.LayerNorm", h, e, c.LayerNormEps, c.DecomposeLayerNorm)
		ex.linear(pred.In("decoder"), "cls.predictions.decoder", h, e, c.VocabSize, true, "logits")
		m.AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(c.VocabSize)}))
	case BERTTokenClassification:
		ex.linear(ex.At("/classifier"), "classifier", x, e, c.NumLabels, true, "logits")
		m.AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(c.NumLabels)}))
	default:
		ex.sequenceClassifier(c, top, x)
	}
}

// sequenceClassifier adds BERT's pooler, tanh(dense(x[:, 0])), and the
// classifier on it, with the logits output [batch, num_labels].
func (ex *exporter) sequenceClassifier(c BERTConfig, top *graph.Builder, x string) {
	e := c.Hidden
	pooler := top.In("pooler")
	first := pooler.Op("Gather", []string{x, ex.Int64(0)}, graph.AttrInt("axis", 1))
	pooled := ex.linear(pooler.In("dense"), "bert.pooler.dense", first, e, e, true, "")
	pooled = pooler.In("activation").Op("Tanh", []string{pooled})
	ex.linear(ex.At("/classifier"), "classifier", pooled, e, c.NumLabels, true, "logits")
	ex.Model().AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, sized(c.NumLabels)}))
}
