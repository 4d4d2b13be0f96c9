package main

import (
	"fmt"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
)

func init() {
	register(&command{
		name:    "apply",
		args:    "BASE --adapter DIR|FILE -o OUT [--as-inputs]",
		summary: "inject a saved LoRA adapter into a base model (from_pretrained) and save the adapted model",
		detail: `
The adapter is a HuggingFace PEFT directory (adapter_config.json and
adapter_model.safetensors, as "peftonnx export-adapter" and PEFT's
save_pretrained write it) or an ONNX Runtime .onnx_adapter file. Each of its
modules lands on the linear layer of the same module name (see "peftonnx
inspect BASE"): exactly, else with leading segments dropped
("base_model.model.transformer.h.0.attn.c_attn" and "h.0.attn.c_attn"), else
reading self_attn as attn, as the onnxruntime-genai builder renames it. A
module that matches no layer, or factors whose shapes do not fit, are an
error that names the module, and nothing is written.

An .onnx_adapter file carries no config: its factors are taken as they
are, at scaling 1 (export-adapter folds alpha/r into lora_B when it writes
one).

With --as-inputs, A and B become graph inputs of dynamic rank whose
defaults are empty, sized for the adapter's layers: fed nothing, OUT is
BASE; "peftonnx run OUT --adapter A" feeds an adapter.

OUT keeps its data in an external file (OUT.data) when BASE does or when it
passes 2 GiB, and is written to a temporary file and renamed.`,
		run: runApply,
	})
}

func runApply(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the adapted model to `OUT` (required)")
	adapterPath := addAdapterFlag(fs, "the LoRA adapter to inject (required)")
	asInputs := fs.Bool("as-inputs", false, "make A and B graph inputs of dynamic rank, with empty defaults")
	pos, err := cx.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cx.usagef("want one BASE model, got %d arguments", len(pos))
	}
	if *out == "" {
		return cx.usagef("-o OUT is required")
	}
	if *adapterPath == "" {
		return cx.usagef("--adapter is required")
	}
	ad, err := loadLoRAAdapter(*adapterPath)
	if err != nil {
		return err
	}
	m, err := graph.Load(pos[0])
	if err != nil {
		return err
	}
	defer m.Close()
	if err := checkOutput(*out, m, *adapterPath); err != nil {
		return err
	}
	external := hasExternalData(m)
	var opts []rewrite.Option
	if *asInputs {
		opts = append(opts, rewrite.AsInputs())
	}
	sites, sum, err := rewrite.Apply(m, ad, opts...)
	if err != nil {
		return fmt.Errorf("applying %s: %w", *adapterPath, err)
	}
	if err := saveModel(m, *out, external); err != nil {
		return err
	}
	fmt.Fprintln(cx.stdout, sum)
	fmt.Fprintf(cx.stdout, "wrote %s: adapter %s on %s%s\n", *out, *adapterPath, countLayers(sites), inputsNote(*asInputs))
	return nil
}
