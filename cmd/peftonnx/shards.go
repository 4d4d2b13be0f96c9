package main

import (
	"fmt"
	"os"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/session"
)

func init() {
	register(&command{
		name:    "shards",
		args:    "split ADAPTER --degree N -o DIR | merge DIR -o OUT [--format paddle|hf]",
		summary: "split a LoRA adapter into PaddleNLP's tensor-parallel shards, or merge them into one",
		detail: `
PaddleNLP saves an adapter trained with tensor parallelism either merged
(save_pretrained(merge_tensor_parallel=True)) or as one state dict per
tensor-parallel rank: lora_config.json with tensor_parallel_degree N and
lora_model_state.tp00.pdparams … tp<N-1>. Loading such shards as one
adapter is an error that says to merge them first; this command does so,
and the reverse.

"shards split ADAPTER --degree N -o DIR" writes ADAPTER (a HuggingFace
PEFT or PaddleNLP directory, or an .onnx_adapter file) as N shards.
PaddleNLP's layers decide the split: q_proj, k_proj, v_proj, gate_proj
and up_proj are column-parallel (ColumnParallelLoRALinear: lora_B split by
output, lora_A on every rank), o_proj and down_proj row-parallel
(RowParallelLoRALinear: lora_A split by input, lora_B on every rank).
Other modules, fused projections (enable_lora), trainable biases and
modules, and prefix adapters are refused, as are dimensions that N does
not divide.

"shards merge DIR -o OUT" reads the N shards in DIR, checks that every
rank holds the same replicated factors, concatenates the split ones in
rank order and writes one adapter with tensor_parallel_degree -1: a
PaddleNLP directory (lora_config.json, lora_model_state.pdparams), or
with --format hf a HuggingFace PEFT directory. Split then merge returns
the adapter bit for bit.

The files are written to temporary names and renamed; the inputs are
never changed.`,
		run: runShards,
	})
}

func runShards(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the shards (split) or the merged adapter (merge) to `DIR` (required)")
	degree := fs.Int("degree", 0, "split: the tensor-parallel degree `N`, 2 or more (required)")
	format := fs.String("format", formatPaddle, "merge: write a `paddle` (PaddleNLP) or hf (HF PEFT) directory")
	verb := ""
	if len(args) > 0 && (args[0] == "split" || args[0] == "merge") {
		verb, args = args[0], args[1:]
	}
	pos, err := cx.parse(args)
	if err != nil {
		return err
	}
	switch {
	case verb == "":
		return cx.usagef("want split or merge, as in: shards split ADAPTER --degree N -o DIR")
	case len(pos) != 1:
		return cx.usagef("shards %s wants one input, got %d arguments", verb, len(pos))
	case *out == "":
		return cx.usagef("-o DIR is required")
	case verb == "split" && *degree < 2:
		return cx.usagef("shards split: --degree must be 2 or more, got %d", *degree)
	case verb == "merge" && *format != formatPaddle && *format != formatHF:
		return cx.usagef("--format must be paddle or hf, got %q", *format)
	}
	if st, err := os.Stat(*out); err == nil {
		if ist, err := os.Stat(pos[0]); err == nil && os.SameFile(st, ist) {
			return fmt.Errorf("shards: -o %s is the input, which is never changed: choose another -o", *out)
		}
	}
	if verb == "split" {
		ad, err := session.LoadAdapter(pos[0])
		if err != nil {
			return err
		}
		if err := adapter.SavePaddleShards(*out, ad, *degree); err != nil {
			return err
		}
		fmt.Fprintf(cx.stdout, "%s: %d LoRA modules split into %d tensor-parallel shards in %s (%s … %s)\n",
			pos[0], len(ad.Weights), *degree, *out, adapter.PaddleShardFile(0), adapter.PaddleShardFile(*degree-1))
		return nil
	}
	ad, err := adapter.LoadPaddleShards(pos[0])
	if err != nil {
		return err
	}
	what := "PaddleNLP directory"
	if *format == formatHF {
		what = "HF PEFT directory"
		err = adapter.SaveDir(*out, ad)
	} else {
		err = adapter.SavePaddleDir(*out, ad)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(cx.stdout, "%s: %d LoRA modules merged from tensor-parallel shards into %s (%s)\n", pos[0], len(ad.Weights), *out, what)
	return nil
}
