package models

import (
	"fmt"
	"math"
)

// LlamaReference computes what the graph Llama(c) returns for in, in
// float64, from the weights w (see WeightsOf). A float16 model's weights
// are used as stored; its activations are not rounded to float16.
func LlamaReference(c LlamaConfig, w Weights, in DecoderInputs) (*DecoderOutputs, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	e, h, kv, d, f := c.Hidden, c.Heads, c.KVHeads, c.HeadDim(), c.Intermediate
	run, err := newDecoderRun("llama", in, c.Layers, kv, d, c.VocabSize, true, c.NoCache)
	if err != nil {
		return nil, err
	}
	rows := in.Batch * in.Seq
	r := &refWeights{w: w}
	x := embed(r.get("model.embed_tokens.weight", c.VocabSize, e), e, in.InputIDs)
	if r.err != nil {
		return nil, r.err
	}

	// RoPE: angle_j = position·θ^(−2j/d) turns the channel pair
	// (j, j+d/2), or, interleaved, the pair (2j, 2j+1).
	pair := func(j int) (int, int) {
		if c.RopeInterleaved {
			return 2 * j, 2*j + 1
		}
		return j, j + d/2
	}
	cos := make([]float64, rows*d)
	sin := make([]float64, rows*d)
	for row, pos := range in.PositionIDs {
		for j := range d / 2 {
			a := float64(pos) / math.Pow(c.RopeTheta, float64(2*j)/float64(d))
			lo, hi := pair(j)
			for _, k := range []int{lo, hi} {
				cos[row*d+k], sin[row*d+k] = math.Cos(a), math.Sin(a)
			}
		}
	}
	rope := func(t []float64, heads int) {
		for row := range rows {
			for hh := range heads {
				v := t[row*heads*d+hh*d:][:d]
				rot := make([]float64, d)
				for j := range d / 2 {
					lo, hi := pair(j)
					rot[lo], rot[hi] = -v[hi], v[lo]
				}
				for j := range d {
					v[j] = v[j]*cos[row*d+j] + rot[j]*sin[row*d+j]
				}
			}
		}
	}

	for i := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ln1 := r.get(p+"input_layernorm.weight", e)
		wq := r.get(p+"self_attn.q_proj.weight", e, h*d)
		wk := r.get(p+"self_attn.k_proj.weight", e, kv*d)
		wv := r.get(p+"self_attn.v_proj.weight", e, kv*d)
		wo := r.get(p+"self_attn.o_proj.weight", h*d, e)
		ln2 := r.get(p+"post_attention_layernorm.weight", e)
		wg := r.get(p+"mlp.gate_proj.weight", e, f)
		wu := r.get(p+"mlp.up_proj.weight", e, f)
		wd := r.get(p+"mlp.down_proj.weight", f, e)
		if r.err != nil {
			return nil, r.err
		}

		n := rmsNormRef(x, rows, e, ln1, c.RMSNormEps)
		q := matmul(n, rows, e, h*d, wq, false, nil)
		k := matmul(n, rows, e, kv*d, wk, false, nil)
		v := matmul(n, rows, e, kv*d, wv, false, nil)
		rope(q, h)
		rope(k, kv)
		a := run.attend(i, q, k, v, h, kv, d)
		addInto(x, matmul(a, rows, h*d, e, wo, false, nil))

		n = rmsNormRef(x, rows, e, ln2, c.RMSNormEps)
		g := matmul(n, rows, e, f, wg, false, nil)
		u := matmul(n, rows, e, f, wu, false, nil)
		for j, gv := range g {
			g[j] = gv / (1 + math.Exp(-gv)) * u[j] // SiLU(gate)·up
		}
		addInto(x, matmul(g, rows, f, e, wd, false, nil))
	}
	norm := r.get("model.norm.weight", e)
	head := r.get("lm_head.weight", e, c.VocabSize)
	if r.err != nil {
		return nil, r.err
	}
	x = rmsNormRef(x, rows, e, norm, c.RMSNormEps)
	run.out.Logits = matmul(x, rows, e, c.VocabSize, head, false, nil)
	return &run.out, nil
}
