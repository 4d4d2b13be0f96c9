package tensorparallel

import (
	"fmt"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
)

// The inputs of an attention piece that take a prefix's keys and values
// (models.LlamaPieces without NoCache).
const (
	pastKeyName   = "past_key"
	pastValueName = "past_value"
)

// prefixShare is a rank's share of a prefix-tuning table, split by KV
// heads (adapter.SplitTensorParallel): per layer, a parameter [P, 2 ·
// heads · dim] that holds, for each virtual token, the keys and then the
// values of the rank's heads. The attention pieces read them as their
// past, broadcast over the batch, as rewrite.InjectPrefix feeds one
// process's past.
type prefixShare struct {
	tokens, heads, dim int
	layers             []*train.Param
}

// newPrefixShare returns the layers' parameters of shard, a prefix
// adapter's shard of layers layers whose config gives heads KV heads on
// this rank (its KV heads divided by degree).
func newPrefixShare(shard *adapter.Adapter, layers, degree int) (*prefixShare, error) {
	c := shard.Prefix
	switch {
	case c.PrefixDropout > 0:
		return nil, fmt.Errorf("tensorparallel: prefix dropout %v: not supported under tensor parallelism", c.PrefixDropout)
	case c.NumHiddenLayers != layers:
		return nil, fmt.Errorf("tensorparallel: the prefix is for %d layers, the model has %d", c.NumHiddenLayers, layers)
	}
	s := &prefixShare{tokens: c.NumPrefixTokens, heads: c.KVHeads() / degree, dim: c.HeadDim()}
	w := 2 * s.heads * s.dim
	if s.tokens <= 0 || !equalShape(shard.Prompt.Shape, int64(s.tokens), int64(layers*w)) {
		return nil, fmt.Errorf("tensorparallel: the prefix shard is %v, want [%d, %d]", shard.Prompt.Shape, s.tokens, layers*w)
	}
	for i := range layers {
		v := make([]float32, 0, s.tokens*w)
		for p := range s.tokens {
			row := shard.Prompt.Data[(p*layers+i)*w:]
			v = append(v, row[:w]...)
		}
		s.layers = append(s.layers, train.NewParam(fmt.Sprintf("%s.layers.%d", rewrite.PromptEmbeddingsName, i), []int64{int64(s.tokens), int64(w)}, v))
	}
	return s, nil
}

// equalShape reports whether shape is [rows, cols].
func equalShape(shape []int64, rows, cols int64) bool {
	return len(shape) == 2 && shape[0] == rows && shape[1] == cols
}

// prefixShard returns this rank's shard of the prefix adapter whose layers
// hold value(l), [P, 2 · heads · dim] each: its table [P, layers · 2 ·
// heads · dim] holds in row p row p of every layer in turn.
func (t *Trainer) prefixShard(value func(l *train.Param) []float32) *adapter.Adapter {
	s := t.prefix
	data := make([]float32, 0, s.tokens*len(s.layers)*2*s.heads*s.dim)
	for p := range s.tokens {
		for _, l := range s.layers {
			v := value(l)
			w := len(v) / s.tokens
			data = append(data, v[p*w:(p+1)*w]...)
		}
	}
	a := adapter.NewPrefix(*t.lora.Prefix)
	a.Prompt = &adapter.Tensor{DType: t.lora.Prompt.DType, Shape: t.lora.Prompt.Shape, Data: data}
	return a
}

// past adds to in layer's past keys and values, [rows, heads, P, dim]:
// the layer's table, the same for every row.
func (s *prefixShare) past(in map[string]*rt.Tensor, layer, rows int) error {
	w, n := 2*s.heads*s.dim, s.heads*s.tokens*s.dim
	data := s.layers[layer].Data
	for kind, name := range []string{pastKeyName, pastValueName} {
		v := make([]float32, rows*n)
		for h := range s.heads {
			for p := range s.tokens {
				copy(v[(h*s.tokens+p)*s.dim:], data[p*w+(kind*s.heads+h)*s.dim:][:s.dim])
			}
		}
		for r := 1; r < rows; r++ {
			copy(v[r*n:], v[:n])
		}
		t, err := rt.NewFloat32([]int64{int64(rows), int64(s.heads), int64(s.tokens), int64(s.dim)}, v)
		if err != nil {
			return err
		}
		in[name] = t
	}
	return nil
}

// addGrad adds to layer's gradient those of its past keys and values,
// grads[pastKeyName] and grads[pastValueName] ([rows, heads, P, dim]),
// summed over the rows.
func (s *prefixShare) addGrad(layer, rows int, grads map[string][]float32) {
	w, n := 2*s.heads*s.dim, s.heads*s.tokens*s.dim
	g := s.layers[layer].Grad
	for kind, name := range []string{pastKeyName, pastValueName} {
		v := grads[name]
		for r := range rows {
			for h := range s.heads {
				for p := range s.tokens {
					dst := g[p*w+(kind*s.heads+h)*s.dim:][:s.dim]
					src := v[r*n+(h*s.tokens+p)*s.dim:][:s.dim]
					for j := range dst {
						dst[j] += src[j]
					}
				}
			}
		}
	}
}

// prefixContext returns the mask and positions of b behind a prefix of
// tokens virtual tokens, as rewrite.InjectPrefix pads and shifts one
// process's: the mask with tokens ones in front of every row, [rows,
// tokens+seq], and the positions plus tokens.
func prefixContext(b train.Batch, tokens int) (mask, positions []int64) {
	mask = make([]int64, 0, b.Size*(tokens+b.SeqLen))
	for r := range b.Size {
		for range tokens {
			mask = append(mask, 1)
		}
		mask = append(mask, b.AttentionMask[r*b.SeqLen:(r+1)*b.SeqLen]...)
	}
	positions = b.PositionIDs()
	for i := range positions {
		positions[i] += int64(tokens)
	}
	return mask, positions
}
