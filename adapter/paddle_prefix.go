package adapter

import (
	"bytes"
	"math"

	"github.com/peftonnx/peftonnx/npy"
)

// This file holds the prefix table in PaddleNLP's layouts: the column
// order of its prefix encoder and pre_caches.npy.

// paddlePrefixColumns returns, for each column of peftonnx's prefix table
// (layer, kind, head, d: each layer's key then value), the column that
// holds the same element in PaddleNLP's (kind, layer, head, d). PaddleNLP
// reshapes the table to [P, 2, layers, kv_heads, head_dim] in
// save_pretrained, and its postprocess_past_key_value functions split the
// layers·2 axis into two halves, keys and values.
func paddlePrefixColumns(c *PrefixConfig) []int {
	layers, heads, dim := c.NumHiddenLayers, c.KVHeads(), c.HeadDim()
	cols := make([]int, layers*2*heads*dim)
	for l := 0; l < layers; l++ {
		for kind := 0; kind < 2; kind++ {
			for h := 0; h < heads; h++ {
				ours := ((l*2+kind)*heads + h) * dim
				theirs := ((kind*layers+l)*heads + h) * dim
				for d := 0; d < dim; d++ {
					cols[ours+d] = theirs + d
				}
			}
		}
	}
	return cols
}

// permuteColumns reorders the last axis of t: toOurs takes column
// cols[j] of t to column j, else column j to cols[j].
func permuteColumns(t *Tensor, cols []int, toOurs bool) *Tensor {
	out := t.Clone()
	w := len(cols)
	for r := 0; r+w <= len(t.Data); r += w {
		src, dst := t.Data[r:r+w], out.Data[r:r+w]
		for j, c := range cols {
			if toOurs {
				dst[j] = src[c]
			} else {
				dst[c] = src[j]
			}
		}
	}
	return out
}

// prefixTable returns the prefix table [P, width] in peftonnx's column
// order: the prompt, or with a projection tanh(prompt·W1 + B1)·W2 + B2,
// computed in float64 and rounded to float32.
func prefixTable(a *Adapter) *Tensor {
	p := a.Projection
	if p == nil {
		return a.Prompt
	}
	rows := int(a.Prompt.Shape[0])
	hid, ph, tw := int(p.W1.Shape[0]), int(p.W1.Shape[1]), int(p.W2.Shape[1])
	out := Zeros(int64(rows), int64(tw))
	mid := make([]float64, ph)
	for r := 0; r < rows; r++ {
		x := a.Prompt.Data[r*hid : (r+1)*hid]
		for j := range mid {
			s := float64(p.B1.Data[j])
			for i, v := range x {
				s += float64(v) * float64(p.W1.Data[i*ph+j])
			}
			mid[j] = math.Tanh(s)
		}
		for k := 0; k < tw; k++ {
			s := float64(p.B2.Data[k])
			for j, m := range mid {
				s += m * float64(p.W2.Data[j*tw+k])
			}
			out.Data[r*tw+k] = float32(s)
		}
	}
	return out
}

// preCaches returns pre_caches.npy: the table as [layers, 2, kv_heads, P,
// head_dim], in the prefix's dtype (bfloat16 as uint16 bits).
func preCaches(a *Adapter) ([]byte, error) {
	c := a.Prefix
	table := prefixTable(a)
	dim := c.HeadDim()
	t := Zeros(preCachesShape(c)...)
	t.DType = c.DType
	eachCacheRow(c, func(cache, row int) { copy(t.Data[cache:cache+dim], table.Data[row:row+dim]) })
	arr, err := tensorArray(t)
	if err != nil {
		return nil, formatErrorf("", "", "%w", err)
	}
	var buf bytes.Buffer
	if err := npy.Write(&buf, arr); err != nil {
		return nil, errorf("%w", err)
	}
	return buf.Bytes(), nil
}

// eachCacheRow calls f for each run of head_dim values of c's prefix, in
// the order of pre_caches.npy [layers, 2, kv_heads, P, head_dim], with its
// offset there (cache) and in the prompt table [P, layers·2·kv_heads·head_dim]
// (row).
func eachCacheRow(c *PrefixConfig, f func(cache, row int)) {
	layers, heads, dim, n := c.NumHiddenLayers, c.KVHeads(), c.HeadDim(), c.NumPrefixTokens
	tw := layers * 2 * heads * dim
	i := 0
	for l := 0; l < layers; l++ {
		for kind := 0; kind < 2; kind++ {
			for h := 0; h < heads; h++ {
				for p := 0; p < n; p++ {
					col := ((l*2+kind)*heads + h) * dim
					f(i, p*tw+col)
					i += dim
				}
			}
		}
	}
}

// preCachesShape is the shape of pre_caches.npy for c.
func preCachesShape(c *PrefixConfig) []int64 {
	return []int64{int64(c.NumHiddenLayers), 2, int64(c.KVHeads()), int64(c.NumPrefixTokens), int64(c.HeadDim())}
}

func readPreCaches(path string, c *PrefixConfig) (*Tensor, error) {
	arr, err := npy.ReadFile(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	t, err := arrayTensor(arr)
	if err != nil {
		return nil, formatErrorf(path, "", "%w", err)
	}
	if want := preCachesShape(c); !equalShape(t.Shape, want) {
		return nil, formatErrorf(path, "", "shape %v, want %v [layers, 2, kv_heads, num_prefix_tokens, head_dim]", t.Shape, want)
	}
	return t, nil
}

// prefixFromPreCaches sets the prompt table from pre_caches.npy alone, as
// a table without projection.
func (a *Adapter) prefixFromPreCaches(path string) error {
	c := a.Prefix
	t, err := readPreCaches(path, c)
	if err != nil {
		return err
	}
	dim := c.HeadDim()
	table := Zeros(int64(c.NumPrefixTokens), int64(c.NumHiddenLayers*2*c.KVHeads()*dim))
	table.DType = t.DType
	eachCacheRow(c, func(cache, row int) { copy(table.Data[row:row+dim], t.Data[cache:cache+dim]) })
	c.PrefixProjection = false
	a.Prompt, a.Projection = table, nil
	if err := a.Validate(); err != nil {
		return inFile(err, path)
	}
	return nil
}

// checkPreCaches checks that pre_caches.npy has the shape of the prefix.
// Its values are not compared: PaddleNLP computes them in the training
// dtype, with dropout as it was at saving.
func (a *Adapter) checkPreCaches(path string) error {
	_, err := readPreCaches(path, a.Prefix)
	return err
}
