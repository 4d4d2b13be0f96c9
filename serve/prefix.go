package serve

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	rt "github.com/peftonnx/peftonnx/runtime"
)

var pastName = regexp.MustCompile(`^past_key_values\.(\d+)\.(key|value)$`)

// prefixPast computes a prefix adapter's keys and values once, as the
// past that every sequence on it starts from: per cache input of the
// decoder, [1, kv_heads, P, head_dim], from the table [P,
// layers·2·kv_heads·head_dim] (computed by the adapter's projection where
// it has one), layer i's key from block 2i and its value from 2i+1, HF
// PEFT's order. It returns the past and P, or an error that says what of
// the adapter does not fit the decoder.
func prefixPast(info rt.DecoderInfo, ad *adapter.Adapter) (map[string]*rt.Tensor, int, error) {
	cfg := ad.Prefix
	if info.Layout != rt.KVPerLayer || len(info.States) > 0 {
		return nil, 0, fmt.Errorf("prefix adapters need a decoder with past_key_values.{i}.key/value caches only; the base has %s", info.Layout)
	}
	if cfg.NumAttentionHeads <= 0 || cfg.HiddenSize%cfg.NumAttentionHeads != 0 {
		return nil, 0, fmt.Errorf("hidden_size %d does not split into num_attention_heads %d", cfg.HiddenSize, cfg.NumAttentionHeads)
	}
	hd := cfg.HiddenSize / cfg.NumAttentionHeads
	switch {
	case cfg.NumHiddenLayers != info.Layers:
		return nil, 0, fmt.Errorf("num_hidden_layers is %d; the base has %d layers with a KV cache", cfg.NumHiddenLayers, info.Layers)
	case cfg.KVHeads() != info.KVHeads:
		return nil, 0, fmt.Errorf("%d key/value heads; the base has %d", cfg.KVHeads(), info.KVHeads)
	case hd != info.HeadDim:
		return nil, 0, fmt.Errorf("head width %d (hidden_size/num_attention_heads); the base has %d", hd, info.HeadDim)
	}
	table, p, err := prefixTable(ad)
	if err != nil {
		return nil, 0, err
	}
	kv := info.KVHeads
	width := info.Layers * 2 * kv * hd
	if len(table) != p*width {
		return nil, 0, fmt.Errorf("the prefix table is %d values per token; the base needs %d (layers·2·kv_heads·head_dim)", len(table)/max(p, 1), width)
	}
	past := map[string]*rt.Tensor{}
	for _, name := range info.Past {
		sub := pastName.FindStringSubmatch(name)
		if sub == nil {
			return nil, 0, fmt.Errorf("cache input %q is not a past_key_values.{i}.key/value", name)
		}
		layer, _ := strconv.Atoi(sub[1])
		if layer >= info.Layers {
			return nil, 0, fmt.Errorf("cache input %q: layer %d of %d", name, layer, info.Layers)
		}
		block := 2 * layer
		if sub[2] == "value" {
			block++
		}
		data := make([]float32, kv*p*hd)
		for h := range kv {
			for t := range p {
				src := table[t*width+block*kv*hd+h*hd:][:hd]
				copy(data[(h*p+t)*hd:], src)
			}
		}
		shape := []int64{1, int64(kv), int64(p), int64(hd)}
		var t *rt.Tensor
		switch info.CacheDType {
		case dtype.Float32:
			t, err = rt.NewFloat32(shape, data)
		case dtype.Float16:
			t, err = rt.NewFloat16FromFloat32(shape, data)
		default:
			return nil, 0, fmt.Errorf("the base's KV cache is %s; prefix adapters take float32 or float16 caches", info.CacheDType)
		}
		if err != nil {
			return nil, 0, err
		}
		past[name] = t
	}
	return past, p, nil
}

// prefixTable returns the adapter's table of keys and values, row-major
// [P, width], and P: prompt_embeddings, or tanh(E·W1 + B1)·W2 + B2 where
// the adapter has a projection (computed in float64).
func prefixTable(ad *adapter.Adapter) ([]float32, int, error) {
	e := ad.Prompt
	if e == nil || len(e.Shape) != 2 {
		return nil, 0, errors.New("no 2-D prompt_embeddings")
	}
	p, n := int(e.Shape[0]), int(e.Shape[1])
	proj := ad.Projection
	if proj == nil {
		return e.Data, p, nil
	}
	if proj.W1 == nil || proj.W2 == nil || len(proj.W1.Shape) != 2 || len(proj.W2.Shape) != 2 ||
		int(proj.W1.Shape[0]) != n || proj.W2.Shape[0] != proj.W1.Shape[1] {
		return nil, 0, errors.New("the prefix projection's weights do not chain (prompt_embeddings·W1·W2)")
	}
	mid, width := int(proj.W1.Shape[1]), int(proj.W2.Shape[1])
	bias := func(b *adapter.Tensor, i int) float64 {
		if b == nil || i >= len(b.Data) {
			return 0
		}
		return float64(b.Data[i])
	}
	out := make([]float32, p*width)
	h := make([]float64, mid)
	for t := range p {
		for j := range mid {
			s := bias(proj.B1, j)
			for k := range n {
				s += float64(e.Data[t*n+k]) * float64(proj.W1.Data[k*mid+j])
			}
			h[j] = math.Tanh(s)
		}
		for j := range width {
			s := bias(proj.B2, j)
			for k := range mid {
				s += h[k] * float64(proj.W2.Data[k*width+j])
			}
			out[t*width+j] = float32(s)
		}
	}
	return out, p, nil
}
