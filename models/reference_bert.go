package models

import (
	"fmt"
	"math"
)

// BERTReference computes the logits [batch, num_labels] that the graph
// BERT(c) returns for in, in float64, from the weights w (see WeightsOf).
func BERTReference(c BERTConfig, w Weights, in EncoderInputs) ([]float64, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	e, h, d, f := c.Hidden, c.Heads, c.HeadDim(), c.Intermediate
	bs, s := in.Batch, in.Seq
	rows := bs * s
	switch {
	case bs <= 0 || s <= 0:
		return nil, errorf("bert reference: batch %d and seq %d must be positive", bs, s)
	case len(in.InputIDs) != rows || len(in.AttentionMask) != rows:
		return nil, errorf("bert reference: %d ids and %d mask values for [%d, %d]", len(in.InputIDs), len(in.AttentionMask), bs, s)
	case in.TokenTypeIDs != nil && len(in.TokenTypeIDs) != rows:
		return nil, errorf("bert reference: %d token types for [%d, %d]", len(in.TokenTypeIDs), bs, s)
	case s > c.MaxPositions:
		return nil, errorf("bert reference: %d positions, the table has %d", s, c.MaxPositions)
	}
	for _, id := range in.InputIDs {
		if id < 0 || id >= int64(c.VocabSize) {
			return nil, errorf("bert reference: token id %d out of [0, %d)", id, c.VocabSize)
		}
	}
	types := in.TokenTypeIDs
	if types == nil {
		types = make([]int64, rows)
	}
	for _, t := range types {
		if t < 0 || t >= int64(c.TypeVocab) {
			return nil, errorf("bert reference: token type %d out of [0, %d)", t, c.TypeVocab)
		}
	}

	r := &refWeights{w: w}
	lin := func(x []float64, n int, module string, inDim, outDim int) []float64 {
		wt, bias := r.get(module+".weight", inDim, outDim), r.get(module+".bias", outDim)
		if r.err != nil {
			return nil
		}
		return matmul(x, n, inDim, outDim, wt, false, bias)
	}
	ln := func(x []float64, module string) []float64 { return r.layerNorm(x, module, rows, e, c.LayerNormEps) }

	word := r.get("bert.embeddings.word_embeddings.weight", c.VocabSize, e)
	posTable := r.get("bert.embeddings.position_embeddings.weight", c.MaxPositions, e)
	typeTable := r.get("bert.embeddings.token_type_embeddings.weight", c.TypeVocab, e)
	if r.err != nil {
		return nil, r.err
	}
	x := embed(word, e, in.InputIDs)
	addInto(x, embed(typeTable, e, types))
	for row := range rows {
		for i := range e {
			x[row*e+i] += float64(posTable[(row%s)*e+i])
		}
	}
	x = ln(x, "bert.embeddings.LayerNorm")
	if r.err != nil {
		return nil, r.err
	}

	allowed := func(b, _, j int) bool { return in.AttentionMask[b*s+j] != 0 }
	// heads turns rows [batch·seq, heads·dim] into [batch, heads, seq, dim].
	heads := func(t []float64) []float64 { return cache(nil, t, bs, s, 0, h, d) }
	for i := range c.Layers {
		p := fmt.Sprintf("bert.encoder.layer.%d.", i)
		q := lin(x, rows, p+"attention.self.query", e, e)
		k := lin(x, rows, p+"attention.self.key", e, e)
		v := lin(x, rows, p+"attention.self.value", e, e)
		if r.err != nil {
			return nil, r.err
		}
		a := attend(q, heads(k), heads(v), bs, s, s, h, h, d, allowed)
		a = lin(a, rows, p+"attention.output.dense", e, e)
		if r.err != nil {
			return nil, r.err
		}
		addInto(a, x)
		x = ln(a, p+"attention.output.LayerNorm")
		m := lin(x, rows, p+"intermediate.dense", e, f)
		if r.err != nil {
			return nil, r.err
		}
		for j, t := range m {
			m[j] = 0.5 * t * (1 + math.Erf(t/math.Sqrt2))
		}
		m = lin(m, rows, p+"output.dense", f, e)
		if r.err != nil {
			return nil, r.err
		}
		addInto(m, x)
		x = ln(m, p+"output.LayerNorm")
		if r.err != nil {
			return nil, r.err
		}
	}

	first := make([]float64, bs*e)
	for b := range bs {
		copy(first[b*e:(b+1)*e], x[b*s*e:])
	}
	pooled := lin(first, bs, "bert.pooler.dense", e, e)
	if r.err != nil {
		return nil, r.err
	}
	for j, t := range pooled {
		pooled[j] = math.Tanh(t)
	}
	logits := lin(pooled, bs, "classifier", e, c.NumLabels)
	if r.err != nil {
		return nil, r.err
	}
	return logits, nil
}
