package main

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/session"
)

func init() {
	register(&command{
		name:    "unmerge",
		args:    "MERGED --adapter DIR|FILE -o OUT",
		summary: "take a merged LoRA or DoRA adapter back out of a model's weights and save the base with the adapter's branches",
		detail: `
"unmerge MERGED --adapter DIR|FILE -o OUT" undoes "merge": it subtracts the
adapter's update s·A·B from each weight it was merged into and injects the
adapter as apply does, so OUT is the adapted model again: the base weights
(to float rounding) with the adapter's branches, ready to train on, export
or merge once more. A merged model keeps A and B in no form, so the adapter
must be given: the directory or file export-adapter wrote from the adapted
model before it was merged.

merge records a fingerprint of each update it folds in (model metadata
peftonnx.merges), and unmerge refuses an adapter whose update is not the
one merged into a weight, or that reaches a weight nothing was merged into:
subtracting the wrong adapter would give a model that runs but is neither
the base nor the adapted one. A model merged before peftonnx kept
fingerprints has none (nor has a model merged by another tool), and any
adapter of the right shapes is taken, with a note on stderr.

DoRA: the merged weight m·V/‖V‖ keeps V's direction but not its norm;
merge keeps the norms (metadata peftonnx.dora_norms), and unmerge restores
the weight with them, checking that each merged column's norm is the
adapter's magnitude. A DoRA model merged without them is refused.

PiSSA and OLoRA (inject --init): the adapter that export-adapter writes of
such a model is converted to a plain LoRA delta on the original weight
(rank 2r), and merge folds the same delta in. unmerge with it gives the
original base weight back, not the residual, with the converted adapter's
branches: the same function as the adapted model. LoftQ (--init loftq)
alike, but the weight it gives back is deq + s·A₀·B₀, LoftQ's
approximation of the original: the adapted model's function still.

int4 (MatMulNBits) layers merged with --requantize are rounded and cannot
be unmerged; a model merged with --dequantize has float weights, which can.
Prefix tuning is never merged, so there is nothing to unmerge. OUT is
written only when every module unmerges (to a temporary file, renamed).`,
		run: runUnmerge,
	})
}

func runUnmerge(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the unmerged, adapted model to `OUT` (required)")
	adapterPath := addAdapterFlag(fs, "the LoRA adapter that was merged into MERGED (required)")
	model, e, err := cx.parseForEdit(args, "MERGED model", out, adapterPath)
	if err != nil {
		return err
	}
	defer e.Close()
	m := e.m
	if *adapterPath == "" {
		msg := "a merged model keeps no A and B"
		if mods, err := rewrite.MergedModules(m); err == nil && len(mods) > 0 {
			msg = fmt.Sprintf("%s records merges into %s but keeps no A and B", model, mergedModulesList(mods))
		}
		return cx.usagef("--adapter is required: %s; give the adapter that export-adapter wrote before the merge", msg)
	}
	if _, err := rewrite.Sites(m); err == nil {
		return fmt.Errorf("unmerge: %s carries LoRA branches, so it is not a merged model: merge it first, or export its adapter with export-adapter", model)
	}
	if _, err := rewrite.PrefixSiteOf(m); err == nil {
		return fmt.Errorf("unmerge: %s carries a prefix, and prefix tuning is never merged into weights: there is nothing to unmerge", model)
	}
	if _, ok, err := session.InputParams(m, *adapterPath); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("unmerge: %s names inputs of %s (an export with its factors as inputs); unmerge takes a LoRA adapter of the model's layers (HF PEFT directory or .onnx_adapter of LoRA factors)", *adapterPath, model)
	}
	ad, err := session.LoadAdapter(*adapterPath)
	if err != nil {
		return err
	}
	if ad.Prefix != nil {
		return fmt.Errorf("unmerge: %s is %s, and prefix tuning is never merged into weights: there is nothing to unmerge", *adapterPath, adapterKind(ad))
	}
	recorded, err := rewrite.MergedModules(m)
	if err != nil {
		return err
	}
	nodes := len(m.Graph().Node)
	sites, sum, err := rewrite.Unmerge(m, ad)
	if err != nil {
		return fmt.Errorf("unmerging %s from %s: %w", *adapterPath, model, err)
	}
	if err := e.save(); err != nil {
		return err
	}
	if len(recorded) == 0 {
		fmt.Fprintf(cx.stderr, "peftonnx: note: %s records no merges (metadata %s), so nothing could tell whether %s is the adapter merged into it: its shapes fit, and it was taken on trust\n", model, rewrite.MergeMetadataKey, *adapterPath)
	}
	fmt.Fprintln(cx.stdout, sum)
	kind := "LoRA"
	if ad.LoRA.UseDoRA {
		kind = "DoRA"
	}
	fmt.Fprintf(cx.stdout, "wrote %s: %s adapter %s taken out of the weights and back as branches on %s, %d nodes (%d before)\n",
		*out, kind, *adapterPath, countLayers(sites), len(m.Graph().Node), nodes)
	return nil
}

// mergedModulesList says how many modules mods names, and the first few.
func mergedModulesList(mods []string) string {
	noun := "modules"
	if len(mods) == 1 {
		noun = "module"
	}
	shown := mods[:min(len(mods), 3)]
	s := fmt.Sprintf("%d %s (%s", len(mods), noun, strings.Join(shown, ", "))
	if len(mods) > len(shown) {
		s += ", …"
	}
	return s + ")"
}
