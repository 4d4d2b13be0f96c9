package main

import (
	"fmt"
	"os"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
)

func init() {
	register(&command{
		name: "prefix",
		args: "MODEL -o OUT --tokens P [--projection] [--projection-hidden H] [--dropout 0] " +
			"[--layers N] [--kv-heads N] [--head-dim N] [--heads N] [--hidden N] [--dtype float32|float16|bfloat16] " +
			"[--replace-past] [--seed N] [--adapter-out DIR]",
		summary: "give a decoder trainable prefix keys and values (prefix tuning) and save the prefixed model",
		detail: `
The prefix is fed where the decoder takes its KV cache: per layer
past_key_values.{i}.key and .value [batch, kv_heads, past, head_dim], or
stacked past_{i} [2, batch, kv_heads, past, head_dim]. Its table,
prompt_embeddings [P, layers·2·kv_heads·head_dim], is laid out as HF PEFT
and PaddleNLP unpack it: per layer the key and then the value, head after
head. It is sized by the KV heads, not the query heads, and starts N(0, 1)
from --seed.

With --projection the table comes from an encoder Embedding → Linear → Tanh
→ Linear of width --projection-hidden (default: the hidden size).
--dropout drops prefix values in training only: the model gains a bool
input prefix_training_mode, false unless fed.

Layers, KV heads and head dim are read from the past inputs, and the
hidden size from the token embedding; --layers, --kv-heads, --head-dim,
--heads and --hidden override them, and one that contradicts the model is
an error.

OUT keeps MODEL's interface: the past inputs stay (a fresh call feeds an
empty past), and the graph puts the prefix in front of them, prepends P
ones to attention_mask and adds P to position_ids, so that positions
continue after the prefix; the present outputs leave the prefix out, so
generation feeds them back as usual. --replace-past removes the past inputs
instead and feeds the prefix alone.

--adapter-out also writes the fresh adapter as a HuggingFace PEFT directory
(adapter_config.json, adapter_model.safetensors).

` + modelOutputNote,
		run: runPrefix,
	})
}

func runPrefix(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the prefixed model to `OUT` (required)")
	tokens := fs.Int("tokens", 0, "number of prefix tokens `P` (required)")
	projection := fs.Bool("projection", false, "compute the table with an Embedding → Linear → Tanh → Linear encoder")
	projHidden := fs.Int("projection-hidden", 0, "width `H` of the encoder's middle layer; 0 takes the hidden size")
	dropout := fs.Float64("dropout", 0, "prefix dropout `rate` in [0, 1), active in training only")
	layers := fs.Int("layers", 0, "number of layers `N`; 0 reads it from the past inputs")
	kvHeads := fs.Int("kv-heads", 0, "key/value heads `N` (multi_query_group_num); 0 reads them from the past inputs")
	headDim := fs.Int("head-dim", 0, "width `N` of one head; 0 reads it from the past inputs")
	heads := fs.Int("heads", 0, "query heads `N`; 0 takes hidden size / head dim")
	hidden := fs.Int("hidden", 0, "hidden size `N`; 0 reads it from the token embedding")
	dtypeFlag := fs.String("dtype", "float32", "element type of the prefix parameters: `float32`, float16 or bfloat16")
	replacePast := fs.Bool("replace-past", false, "remove the past inputs and feed the prefix alone where they went")
	seed := fs.Uint64("seed", 0, "seed `N` for the initial values")
	adapterOut := fs.String("adapter-out", "", "also write the adapter as a HuggingFace PEFT directory `DIR`")
	model, err := cx.parseOne(args, "MODEL", "-o OUT")
	if err != nil {
		return err
	}
	switch {
	case *tokens <= 0:
		return cx.usagef("--tokens must be positive, got %d (it is required)", *tokens)
	case *projHidden < 0:
		return cx.usagef("--projection-hidden must not be negative, got %d", *projHidden)
	case *projHidden > 0 && !*projection:
		return cx.usagef("--projection-hidden needs --projection")
	case !(*dropout >= 0 && *dropout < 1):
		return cx.usagef("--dropout must be in [0, 1), got %v", *dropout)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"layers", *layers}, {"kv-heads", *kvHeads}, {"head-dim", *headDim}, {"heads", *heads}, {"hidden", *hidden}} {
		if f.v < 0 {
			return cx.usagef("--%s must not be negative, got %d", f.name, f.v)
		}
	}
	cfg := adapter.PrefixConfig{
		NumPrefixTokens:            *tokens,
		NumAttentionHeads:          *heads,
		MultiQueryGroupNum:         *kvHeads,
		NumHiddenLayers:            *layers,
		HiddenSize:                 *hidden,
		PrefixProjection:           *projection,
		PrefixProjectionHiddenSize: *projHidden,
		PrefixDropout:              *dropout,
		TaskType:                   "CAUSAL_LM",
	}
	if cfg.DType, err = parseAdapterDType(*dtypeFlag); err != nil {
		return cx.usagef("--dtype: %w", err)
	}
	if *adapterOut != "" {
		if st, err := os.Stat(*adapterOut); err == nil && !st.IsDir() {
			return fmt.Errorf("adapter output %s is a file; want a directory", *adapterOut)
		}
	}

	e, err := loadForEdit(model, *out)
	if err != nil {
		return err
	}
	defer e.Close()
	cfg.BaseModelName = model
	opts := []rewrite.PrefixOption{rewrite.PrefixSeed(*seed)}
	if *headDim > 0 {
		opts = append(opts, rewrite.PrefixHeadDim(*headDim))
	}
	if *replacePast {
		opts = append(opts, rewrite.PrefixReplacePast())
	}
	site, sum, err := rewrite.InjectPrefix(e.m, cfg, opts...)
	if err != nil {
		return err
	}
	var ad *adapter.Adapter
	if *adapterOut != "" {
		if ad, err = rewrite.ExtractPrefix(e.m); err != nil {
			return err
		}
	}
	if err := e.save(); err != nil {
		return err
	}
	if ad != nil {
		if err := adapter.SaveDir(*adapterOut, ad); err != nil {
			// The command failed: take back the model it wrote.
			e.remove()
			return err
		}
	}
	c := site.Config
	fmt.Fprintln(cx.stdout, sum)
	where := "in front of the past inputs"
	if site.ReplacedPast {
		where = "in place of the past inputs"
	}
	fmt.Fprintf(cx.stdout, "wrote %s: prefix of %d tokens on %d layers (%d KV heads of width %d), %s\n",
		*out, c.NumPrefixTokens, c.NumHiddenLayers, c.KVHeads(), c.HeadDim(), where)
	if ad != nil {
		fmt.Fprintf(cx.stdout, "wrote adapter %s\n", *adapterOut)
	}
	return nil
}
