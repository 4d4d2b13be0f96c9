package models

import (
	"fmt"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// LlamaPieces is one tensor-parallel rank's share of a LLaMA decoder
// (Llama), sharded as Megatron-LM and PaddleNLP shard it, as graphs that
// run one after the other with a sum over the ranks between them:
//
//   - Embed takes "input_ids" [batch, seq] and gives "partial"
//     [batch, seq, hidden]: the rows of the rank's run of the vocabulary
//     (model.embed_tokens.weight split by rows), zero for ids outside it.
//     The sum over the ranks is the embedding.
//   - Blocks holds, layer by layer, the attention block and then the MLP
//     block. Each takes "hidden" [batch, seq, hidden], "attention_mask"
//     [batch, seq] and "position_ids" [batch, seq] (the MLP block reads
//     only "hidden") and gives "partial": the block's output before the
//     residual Add, from the rank's heads (q_proj, k_proj, v_proj split by
//     output, whole heads, o_proj by input) or the rank's run of the MLP
//     (gate_proj and up_proj by output, down_proj by input). hidden plus
//     the sum over the ranks is the block's output.
//   - Head takes "hidden" and gives "logits" [batch, seq, vocab/degree]:
//     the final norm and the rank's columns of lm_head, the rank's run of
//     the vocabulary.
//
// Unless the config says NoCache, each attention block also takes
// "past_key" and "past_value" [batch, kv_heads/degree, past, head_dim],
// the rank's KV heads of a past (a prefix, for prefix tuning), which it
// puts before this run's keys (after RoPE) and values as Llama does;
// "attention_mask" is then [batch, past+seq]. It has no present outputs.
//
// Every weight is the full model's, under the same name, sliced; the
// norms are whole on every rank. The linear layers are named as in Llama,
// so that rewrite's adapters find them.
type LlamaPieces struct {
	Embed  *graph.Model
	Blocks []*graph.Model
	Head   *graph.Model
	// VocabStart is the first token id of the rank's run of the
	// vocabulary, and VocabIDs how many ids it holds; VocabWidth is the
	// width of Head's logits, ⌈vocab/degree⌉: a vocabulary that the ranks
	// do not split evenly is padded, as Megatron-LM pads it, with zero
	// embedding rows and lm_head columns, whose logits the loss leaves out.
	VocabStart, VocabIDs, VocabWidth int
}

// LlamaTensorParallel returns rank's pieces of full, a model that Llama
// built from c (or one whose float32 weights are named and laid out as
// Llama's), at tensor-parallel degree degree. With full nil, the pieces
// hold the weights that Llama(c) would, drawn one at a time, so that no
// rank holds the whole model. The heads, the KV heads, the MLP width and
// the vocabulary must split evenly among the ranks.
func LlamaTensorParallel(c LlamaConfig, full *graph.Model, rank, degree int) (*LlamaPieces, error) {
	// The pieces of a model with a KV cache take a past: CheckTensorParallel
	// checks the rest.
	nc := c
	nc.NoCache = true
	if err := nc.CheckTensorParallel(degree); err != nil {
		return nil, err
	}
	if rank < 0 || rank >= degree {
		return nil, errorf("llama tensor parallel: rank %d of degree %d", rank, degree)
	}
	c = c.withDefaults()
	sh := &llamaSharder{c: c, full: full, rank: rank, degree: degree}
	lo, hi, width := sh.vocabRange()
	p := &LlamaPieces{VocabStart: lo, VocabIDs: hi - lo, VocabWidth: width}
	var err error
	if p.Embed, err = sh.embed(); err != nil {
		return nil, err
	}
	for i := range c.Layers {
		attn, err := sh.attention(i)
		if err != nil {
			return nil, err
		}
		mlp, err := sh.mlp(i)
		if err != nil {
			return nil, err
		}
		p.Blocks = append(p.Blocks, attn, mlp)
	}
	if p.Head, err = sh.head(); err != nil {
		return nil, err
	}
	return p, nil
}

// CheckTensorParallel reports why a LoRA run cannot shard a model of c
// at degree degree: a degree below 1, one that does not divide the heads,
// the KV heads and the MLP width, or a model other than a float32 one in
// Optimum's layout without a KV cache. (LlamaTensorParallel shards a
// model with a KV cache too, its attention pieces taking a past, which a
// prefix-tuning run fills; it checks the rest.)
func (c LlamaConfig) CheckTensorParallel(degree int) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.withDefaults()
	switch {
	case degree < 1:
		return errorf("llama tensor parallel: degree %d: want 1 or more", degree)
	case c.Heads%degree != 0 || c.KVHeads%degree != 0 || c.Intermediate%degree != 0:
		return errorf("llama tensor parallel: degree %d does not divide the %d heads, %d KV heads and MLP width %d", degree, c.Heads, c.KVHeads, c.Intermediate)
	case c.DType != dtype.Float32:
		return errorf("llama tensor parallel: the model is %s: only float32 models are sharded", c.DType)
	case c.Producer != Optimum:
		return errorf("llama tensor parallel: the model is in the %s layout: only Optimum's is sharded", c.Producer)
	case !c.NoCache:
		return errorf("llama tensor parallel: the model has a KV cache (past_key_values inputs): only models without one (NoCache) are sharded")
	}
	return nil
}

// llamaSharder builds the pieces of one rank.
type llamaSharder struct {
	c            LlamaConfig
	full         *graph.Model
	rank, degree int
}

// start returns an exporter for a piece, whose graph is called name.
func (sh *llamaSharder) start(name string) *exporter {
	return newExporter(name, sh.c.DType, sh.c.Seed, sh.c.InitStd, false)
}

// finish replaces the weights the piece's exporter drew with the rank's
// part of the full model's (part), and checks the piece.
func (sh *llamaSharder) finish(ex *exporter) (*graph.Model, error) {
	dims := sh.weightDims()
	for _, init := range ex.Model().Graph().Initializer {
		full, ok := dims[init.Name]
		if !ok || sh.split(init.Name) == splitNone && sh.full == nil {
			continue // drawn whole already, as Llama draws it
		}
		vals, err := sh.part(ex, init.Name, full)
		if err == nil {
			err = graph.SetFloat32s(init, vals)
		}
		if err != nil {
			return nil, errorf("llama tensor parallel: %s: %w", init.Name, err)
		}
	}
	return ex.finish("llama tensor parallel")
}

// part returns the rank's part of the weight called name, of shape full
// in the whole model, split as split says (rangeOf: rows or columns lo to
// hi, padded with zeros to width): sliced from the full model, or,
// without one, drawn from the part of the weight's stream that Llama
// draws for those values, so that no whole weight is ever held.
func (sh *llamaSharder) part(ex *exporter, name string, full []int64) ([]float32, error) {
	rows, cols := int(full[0]), 1
	if len(full) == 2 {
		cols = int(full[1])
	}
	how := sh.split(name)
	var vals []float32 // the full model's, when there is one
	if sh.full != nil {
		src := sh.full.Initializer(name)
		switch {
		case src == nil:
			return nil, fmt.Errorf("the model has no such weight")
		case !slices.Equal(src.Dims, full):
			return nil, fmt.Errorf("%v in the model, want %v", src.Dims, full)
		}
		var err error
		if vals, err = sh.full.Float32s(src); err != nil {
			return nil, err
		}
	}
	stream := streamSeed(ex.seed, name)
	// fill sets dst to the values from offset off of the weight.
	fill := func(dst []float32, off int) {
		if vals != nil {
			copy(dst, vals[off:])
		} else {
			fillNormal(dst, stream, off, 0, ex.std)
		}
	}
	switch how {
	case splitRowsOf:
		lo, hi, width := sh.rangeOf(name, rows)
		out := make([]float32, width*cols)
		fill(out[:(hi-lo)*cols], lo*cols)
		return out, nil
	case splitColumnsOf:
		lo, hi, width := sh.rangeOf(name, cols)
		out := make([]float32, rows*width)
		for r := range rows {
			fill(out[r*width:r*width+hi-lo], r*cols+lo)
		}
		return out, nil
	}
	if vals == nil {
		return nil, fmt.Errorf("not a split weight")
	}
	return vals, nil
}

// rangeOf returns the rank's run lo to hi of the n rows or columns along
// which the weight called name is split, and the width of its part: the
// vocabulary's run for the embedding and lm_head (vocabRange), an even
// split otherwise.
func (sh *llamaSharder) rangeOf(name string, n int) (lo, hi, width int) {
	if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
		return sh.vocabRange()
	}
	width = n / sh.degree
	return sh.rank * width, (sh.rank + 1) * width, width
}

// vocabRange returns the rank's run of token ids, lo to hi, and the width
// ⌈vocab/degree⌉ that every rank's part is padded to.
func (sh *llamaSharder) vocabRange() (lo, hi, width int) {
	v := sh.c.VocabSize
	width = (v + sh.degree - 1) / sh.degree
	lo = min(sh.rank*width, v)
	return lo, min(lo+width, v), width
}

// weightDims returns the full model's weights and their shapes.
func (sh *llamaSharder) weightDims() map[string][]int64 {
	c := sh.c
	e, q, kv, w, v := int64(c.Hidden), int64(c.Heads*c.HeadDim()), int64(c.KVHeads*c.HeadDim()), int64(c.Intermediate), int64(c.VocabSize)
	dims := map[string][]int64{"model.embed_tokens.weight": {v, e}, "model.norm.weight": {e}, "lm_head.weight": {e, v}}
	for i := range c.Layers {
		for m, d := range map[string][]int64{
			"input_layernorm": {e}, "post_attention_layernorm": {e},
			"self_attn.q_proj": {e, q}, "self_attn.k_proj": {e, kv}, "self_attn.v_proj": {e, kv}, "self_attn.o_proj": {q, e},
			"mlp.gate_proj": {e, w}, "mlp.up_proj": {e, w}, "mlp.down_proj": {w, e},
		} {
			dims[fmt.Sprintf("model.layers.%d.%s.weight", i, m)] = d
		}
	}
	return dims
}

// How a weight is split among the ranks.
const (
	splitNone      = iota // whole on every rank
	splitRowsOf           // by its first axis
	splitColumnsOf        // by its second axis
)

// split says how the weight called name is split: the embedding and
// o_proj and down_proj by rows, q_proj, k_proj, v_proj, gate_proj, up_proj
// and lm_head by columns, the norms not at all.
func (sh *llamaSharder) split(name string) int {
	for _, s := range []struct {
		suffix string
		how    int
	}{
		{"embed_tokens.weight", splitRowsOf}, {"o_proj.weight", splitRowsOf}, {"down_proj.weight", splitRowsOf},
		{"q_proj.weight", splitColumnsOf}, {"k_proj.weight", splitColumnsOf}, {"v_proj.weight", splitColumnsOf},
		{"gate_proj.weight", splitColumnsOf}, {"up_proj.weight", splitColumnsOf}, {"lm_head.weight", splitColumnsOf},
	} {
		if len(name) >= len(s.suffix) && name[len(name)-len(s.suffix):] == s.suffix {
			return s.how
		}
	}
	return splitNone
}

// embed builds the vocabulary-parallel embedding.
func (sh *llamaSharder) embed() (*graph.Model, error) {
	c := sh.c
	ex := sh.start("llama tp embed")
	m := ex.Model()
	m.AddInput(graph.SymbolicTensorInfo("input_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	start, _, width := sh.vocabRange()
	per, lo := int64(width), int64(start)
	s := ex.At("/model").In("embed_tokens")
	emb := ex.weight("model.embed_tokens.weight", per, int64(c.Hidden))
	local := s.Op("Sub", []string{"input_ids", ex.Int64(lo)})
	inside := s.Op("And", []string{
		s.Op("GreaterOrEqual", []string{local, ex.Int64(0)}),
		s.Op("Less", []string{local, ex.Int64(per)}),
	})
	safe := s.Op("Where", []string{inside, local, ex.Int64(0)})
	rows := s.Op("Gather", []string{emb, safe})
	keep := s.Op("Cast", []string{s.Op("Unsqueeze", []string{inside, ex.Int64s(-1)})}, graph.AttrInt("to", int64(dtype.Float32)))
	opTo(s, "partial", "Mul", []string{rows, keep})
	m.AddOutput(graph.SymbolicTensorInfo("partial", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(c.Hidden)}))
	return sh.finish(ex)
}

// blockInputs adds the inputs of a block: hidden, and for attention the
// mask and positions.
func (sh *llamaSharder) blockInputs(m *graph.Model, attention bool) {
	m.AddInput(graph.SymbolicTensorInfo("hidden", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(sh.c.Hidden)}))
	if attention {
		m.AddInput(graph.SymbolicTensorInfo("attention_mask", dtype.Int64, []graph.Dim{batchDim, totalDim}))
		m.AddInput(graph.SymbolicTensorInfo("position_ids", dtype.Int64, []graph.Dim{batchDim, seqDim}))
	}
}

// attention builds the rank's heads of layer i's attention block.
func (sh *llamaSharder) attention(i int) (*graph.Model, error) {
	c := sh.c
	ex := sh.start(fmt.Sprintf("llama tp layer %d attention", i))
	m := ex.Model()
	sh.blockInputs(m, true)
	e, h, kv, d := c.Hidden, c.Heads/sh.degree, c.KVHeads/sh.degree, c.HeadDim()
	top := ex.At("/model")
	mask, _ := ex.causalMask(top, "hidden", "attention_mask")
	cos, sin := ex.rotary(top.In("rotary_emb"), "position_ids", d, c.RopeTheta, c.RopeInterleaved)
	layer := top.In(fmt.Sprintf("layers.%d", i))
	module := fmt.Sprintf("model.layers.%d", i)
	attn := layer.In("self_attn")
	q, k, v := ex.llamaQKV(c, layer, module, "hidden", h, kv, cos, sin)
	if !c.NoCache {
		for _, name := range []string{"past_key", "past_value"} {
			m.AddInput(graph.SymbolicTensorInfo(name, dtype.Float32, []graph.Dim{batchDim, sized(kv), pastDim, sized(d)}))
		}
		k = attn.Op("Concat", []string{"past_key", k}, graph.AttrInt("axis", 2))
		v = attn.Op("Concat", []string{"past_value", v}, graph.AttrInt("axis", 2))
	}
	k = ex.repeatKV(attn, k, kv, h/kv, d)
	v = ex.repeatKV(attn, v, kv, h/kv, d)
	a := ex.attention(attn, q, k, v, mask, d, false)
	a = ex.mergeHeads(attn, a, h*d)
	ex.linear(attn.In("o_proj"), module+".self_attn.o_proj", a, h*d, e, false, "partial")
	m.AddOutput(graph.SymbolicTensorInfo("partial", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(e)}))
	return sh.finish(ex)
}

// mlp builds the rank's run of layer i's MLP block.
func (sh *llamaSharder) mlp(i int) (*graph.Model, error) {
	c := sh.c
	ex := sh.start(fmt.Sprintf("llama tp layer %d mlp", i))
	m := ex.Model()
	sh.blockInputs(m, false)
	e, w := c.Hidden, c.Intermediate/sh.degree
	layer := ex.At("/model").In(fmt.Sprintf("layers.%d", i))
	module := fmt.Sprintf("model.layers.%d", i)
	mlp := layer.In("mlp")
	n := ex.rmsNorm(layer.In("post_attention_layernorm"), module+".post_attention_layernorm", "hidden", e, c.RMSNormEps)
	g := ex.linear(mlp.In("gate_proj"), module+".mlp.gate_proj", n, e, w, false, "")
	act := mlp.In("act_fn")
	g = act.Op("Mul", []string{g, act.Op("Sigmoid", []string{g})})
	u := ex.linear(mlp.In("up_proj"), module+".mlp.up_proj", n, e, w, false, "")
	g = mlp.Op("Mul", []string{g, u})
	ex.linear(mlp.In("down_proj"), module+".mlp.down_proj", g, w, e, false, "partial")
	m.AddOutput(graph.SymbolicTensorInfo("partial", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(e)}))
	return sh.finish(ex)
}

// head builds the final norm and the rank's columns of lm_head.
func (sh *llamaSharder) head() (*graph.Model, error) {
	c := sh.c
	ex := sh.start("llama tp head")
	m := ex.Model()
	sh.blockInputs(m, false)
	_, _, per := sh.vocabRange()
	x := ex.rmsNorm(ex.At("/model").In("norm"), "model.norm", "hidden", c.Hidden, c.RMSNormEps)
	ex.linear(ex.At("/lm_head"), "lm_head", x, c.Hidden, per, false, "logits")
	m.AddOutput(graph.SymbolicTensorInfo("logits", dtype.Float32, []graph.Dim{batchDim, seqDim, sized(per)}))
	return sh.finish(ex)
}
