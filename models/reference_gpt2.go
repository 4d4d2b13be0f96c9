package models

import (
	"fmt"
	"math"
)

// GPT2Reference computes what the graph GPT2(c) returns for in, in float64,
// from the weights w (see WeightsOf). in.PositionIDs is ignored: positions
// are past … past+seq−1, as in the graph.
func GPT2Reference(c GPT2Config, w Weights, in DecoderInputs) (*DecoderOutputs, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	e, h, d, f := c.Hidden, c.Heads, c.HeadDim(), c.Intermediate
	run, err := newDecoderRun("gpt2", in, c.Layers, h, d, c.VocabSize, false, c.NoCache)
	if err != nil {
		return nil, err
	}
	rows := in.Batch * in.Seq
	if run.total > c.MaxPositions {
		return nil, errorf("gpt2 reference: %d positions, the table has %d", run.total, c.MaxPositions)
	}
	r := &refWeights{w: w}
	wte := r.get("transformer.wte.weight", c.VocabSize, e)
	wpe := r.get("transformer.wpe.weight", c.MaxPositions, e)
	if r.err != nil {
		return nil, r.err
	}
	x := embed(wte, e, in.InputIDs)
	for row := range rows {
		pos := run.past + row%in.Seq
		for i := range e {
			x[row*e+i] += float64(wpe[pos*e+i])
		}
	}

	// lin applies one of the block's linear layers, in either layout.
	lin := func(x []float64, module string, inDim, outDim int) []float64 {
		var wt []float32
		if c.Gemm {
			wt = r.get(module+".weight", outDim, inDim)
		} else {
			wt = r.get(module+".weight", inDim, outDim)
		}
		bias := r.get(module+".bias", outDim)
		if r.err != nil {
			return nil
		}
		return matmul(x, rows, inDim, outDim, wt, c.Gemm, bias)
	}
	ln := func(x []float64, module string) []float64 { return r.layerNorm(x, module, rows, e, c.LayerNormEps) }

	for i := range c.Layers {
		p := fmt.Sprintf("transformer.h.%d.", i)
		n := ln(x, p+"ln_1")
		qkv := lin(n, p+"attn.c_attn", e, 3*e)
		if r.err != nil {
			return nil, r.err
		}
		q := make([]float64, rows*e)
		k := make([]float64, rows*e)
		v := make([]float64, rows*e)
		for row := range rows {
			copy(q[row*e:(row+1)*e], qkv[row*3*e:])
			copy(k[row*e:(row+1)*e], qkv[row*3*e+e:])
			copy(v[row*e:(row+1)*e], qkv[row*3*e+2*e:])
		}
		a := run.attend(i, q, k, v, h, h, d)
		a = lin(a, p+"attn.c_proj", e, e)
		if r.err != nil {
			return nil, r.err
		}
		addInto(x, a)

		n = ln(x, p+"ln_2")
		m := lin(n, p+"mlp.c_fc", e, f)
		if r.err != nil {
			return nil, r.err
		}
		for j, t := range m {
			m[j] = 0.5 * t * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(t+0.044715*t*t*t)))
		}
		m = lin(m, p+"mlp.c_proj", f, e)
		if r.err != nil {
			return nil, r.err
		}
		addInto(x, m)
	}
	x = ln(x, "transformer.ln_f")
	head := r.get("lm_head.weight", e, c.VocabSize)
	if r.err != nil {
		return nil, r.err
	}
	run.out.Logits = matmul(x, rows, e, c.VocabSize, head, false, nil)
	return &run.out, nil
}
