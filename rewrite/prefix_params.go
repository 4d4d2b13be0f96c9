package rewrite

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
)

// prefixParam is one prefix parameter to add: its name, shape and values.
type prefixParam struct {
	name   string
	shape  []int64
	values []float32
}

// prefixParams returns the parameters for plan: prompt_embeddings, then,
// with a projection, W1, B1, W2 and B2. Their values come from ad, checked
// against the completed config, or fresh from seed.
func prefixParams(p *prefixPlan, ad *adapter.Adapter, seed uint64) ([]prefixParam, error) {
	c := &p.cfg
	P, h, ph, w := int64(c.NumPrefixTokens), int64(c.HiddenSize), int64(c.PrefixProjectionHiddenSize), int64(c.TableWidth())
	params := []prefixParam{{name: PromptEmbeddingsName, shape: []int64{P, int64(c.EmbeddingWidth())}}}
	if c.PrefixProjection {
		params = append(params,
			prefixParam{name: prefixW1Name, shape: []int64{h, ph}},
			prefixParam{name: prefixB1Name, shape: []int64{ph}},
			prefixParam{name: prefixW2Name, shape: []int64{ph, w}},
			prefixParam{name: prefixB2Name, shape: []int64{w}},
		)
	}
	if ad != nil {
		given := []*adapter.Tensor{ad.Prompt}
		if c.PrefixProjection {
			if ad.Projection == nil {
				return nil, errorf("prefix adapter: prefix_projection is set but the projection weights are missing")
			}
			pr := ad.Projection
			given = append(given, pr.W1, pr.B1, pr.W2, pr.B2)
		}
		for i := range params {
			t := given[i]
			if !slices.Equal(t.Shape, params[i].shape) {
				return nil, errorf("prefix adapter: %s has shape %v, but the model needs %v (%d prefix tokens, %d layers × 2 × %d KV heads × head dim %d = %d, hidden size %d)",
					params[i].name, t.Shape, params[i].shape, c.NumPrefixTokens, c.NumHiddenLayers, c.KVHeads(), c.HeadDim(), c.TableWidth(), c.HiddenSize)
			}
			params[i].values = slices.Clone(t.Data)
		}
		return params, nil
	}
	for i := range params {
		pr := &params[i]
		rng := prefixRNG(seed, pr.name)
		n := int(pr.shape[0])
		if len(pr.shape) == 2 {
			n *= int(pr.shape[1])
		}
		pr.values = make([]float32, n)
		if i == 0 {
			// torch.nn.Embedding: N(0, 1).
			for j := range pr.values {
				pr.values[j] = float32(rng.NormFloat64())
			}
			continue
		}
		// torch.nn.Linear: weight and bias U(-1/√fan_in, 1/√fan_in).
		fanIn := h
		if i > 2 {
			fanIn = ph
		}
		bound := 1 / math.Sqrt(float64(fanIn))
		for j := range pr.values {
			pr.values[j] = float32((2*rng.Float64() - 1) * bound)
		}
	}
	return params, nil
}

// prefixRNG returns the stream for the parameter called name.
func prefixRNG(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte("prefix:" + name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}
