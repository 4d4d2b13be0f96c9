package main

import (
	"fmt"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/session"
)

func init() {
	register(&command{
		name:    "apply",
		args:    "BASE --adapter DIR|FILE -o OUT [--as-inputs] [--replace-past]",
		summary: "inject a saved LoRA or prefix adapter into a base model (from_pretrained) and save the adapted model",
		detail: `
The adapter is a HuggingFace PEFT directory (adapter_config.json and
adapter_model.safetensors, as "peftonnx export-adapter" and PEFT's
save_pretrained write it) or an ONNX Runtime .onnx_adapter file. Its
adapter_config.json says which kind it is: peft_type LORA or
PREFIX_TUNING.

Each module of a LoRA adapter lands on the linear layer of the same module
name (see "peftonnx inspect BASE"): exactly, else with leading segments
dropped ("base_model.model.transformer.h.0.attn.c_attn" and
"h.0.attn.c_attn"), else reading self_attn as attn, as the
onnxruntime-genai builder renames it. A module that matches no layer, or
factors whose shapes do not fit, are an error that names the module, and
nothing is written.

An .onnx_adapter file carries no config: its factors are taken as they
are, at scaling 1 (export-adapter folds alpha/r into lora_B when it writes
one). A file whose parameters are named after inputs of BASE (an export
with its LoRA factors as inputs, such as lora_param_a and lora_param_b),
as ONNX Runtime feeds them, becomes the defaults of those inputs: OUT fed
nothing runs the adapter.

With --as-inputs, A and B become graph inputs of dynamic rank whose
defaults are empty, sized for the adapter's layers: fed nothing, OUT is
BASE; "peftonnx run OUT --adapter A" feeds an adapter.

A prefix adapter (PREFIX_TUNING, as "peftonnx prefix --adapter-out" and
export-adapter write it) is injected as "peftonnx prefix" injects a fresh
one, with the adapter's prompt_embeddings (and projection, if any) as the
parameters: BASE must be a decoder with past_key_values inputs whose
layers, KV heads and head dim match the adapter's config. OUT keeps BASE's
interface, the prefix in front of the past inputs; --replace-past removes
the past inputs instead and feeds the prefix alone where they went, as
"peftonnx prefix --replace-past" does. A model carries LoRA or a prefix,
not both: BASE must carry neither.

OUT keeps its data in an external file (OUT.data) when BASE does or when it
passes 2 GiB, and is written to a temporary file and renamed.`,
		run: runApply,
	})
}

func runApply(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the adapted model to `OUT` (required)")
	adapterPath := addAdapterFlag(fs, "the LoRA or prefix adapter to inject (required)")
	asInputs := fs.Bool("as-inputs", false, "LoRA: make A and B graph inputs of dynamic rank, with empty defaults")
	replacePast := fs.Bool("replace-past", false, "prefix: remove the past inputs and feed the prefix alone where they went")
	_, e, err := cx.parseForEdit(args, "BASE model", out, adapterPath, "--adapter")
	if err != nil {
		return err
	}
	defer e.Close()
	if params, ok, err := session.InputParams(e.m, *adapterPath); err != nil {
		return err
	} else if ok {
		return applyInputParams(cx, e, params, *adapterPath, *asInputs || *replacePast)
	}
	ad, err := session.LoadAdapter(*adapterPath)
	if err != nil {
		return err
	}
	switch {
	case ad.Prefix != nil && *asInputs:
		return cx.usagef("--as-inputs makes LoRA factors graph inputs, but %s is %s", *adapterPath, adapterKind(ad))
	case ad.LoRA != nil && *replacePast:
		return cx.usagef("--replace-past is for prefix adapters, but %s is %s", *adapterPath, adapterKind(ad))
	}
	var opts []rewrite.Option
	if *asInputs {
		opts = append(opts, rewrite.AsInputs())
	}
	if *replacePast {
		opts = append(opts, rewrite.PrefixReplacePast())
	}
	adapted, err := rewrite.Apply(e.m, ad, opts...)
	if err != nil {
		return fmt.Errorf("applying %s: %w", *adapterPath, err)
	}
	if err := e.save(); err != nil {
		return err
	}
	fmt.Fprintln(cx.stdout, adapted.Summary)
	if adapted.Prefix != nil {
		fmt.Fprintf(cx.stdout, "wrote %s: prefix adapter %s, %s\n", *out, *adapterPath, describePrefix(adapted.Prefix))
	} else {
		fmt.Fprintf(cx.stdout, "wrote %s: adapter %s on %s%s\n", *out, *adapterPath, countLayers(adapted.Sites), inputsNote(*asInputs))
	}
	return nil
}

// describePrefix says what a prefix site holds and where it goes: "4
// tokens on 2 layers (2 KV heads of width 4), in front of the past inputs".
func describePrefix(site *rewrite.PrefixSite) string {
	where := "in front of the past inputs"
	if site.ReplacedPast {
		where = "in place of the past inputs"
	}
	return prefixShape(site.Config) + ", " + where
}

// prefixShape says how large a prefix is: "4 tokens on 2 layers (2 KV
// heads of width 4)", and the projection's width if it has one.
func prefixShape(c adapter.PrefixConfig) string {
	s := fmt.Sprintf("%d tokens on %d layers (%d KV heads of width %d)", c.NumPrefixTokens, c.NumHiddenLayers, c.KVHeads(), c.HeadDim())
	if c.PrefixProjection {
		s += fmt.Sprintf(" through a projection of width %d", c.PrefixProjectionHiddenSize)
	}
	return s
}

// applyInputParams writes e's model with the parameters of an ONNX Runtime
// adapter file whose names are its inputs as those inputs' defaults
// (rewrite.ApplyInputs).
func applyInputParams(cx *context, e *editedModel, params map[string]*adapter.Tensor, adapterPath string, options bool) error {
	if options {
		return fmt.Errorf("%s feeds the inputs of its parameters' names, as ONNX Runtime does; --as-inputs and --replace-past do not apply to it", adapterPath)
	}
	if err := rewrite.ApplyInputs(e.m, params); err != nil {
		return fmt.Errorf("applying %s: %w", adapterPath, err)
	}
	if err := e.save(); err != nil {
		return err
	}
	fmt.Fprintf(cx.stdout, "wrote %s: adapter %s as the defaults of the inputs %s\n", e.out, adapterPath, paramNames(params))
	return nil
}
