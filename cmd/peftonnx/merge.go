package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"text/tabwriter"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/rewrite"
	"github.com/peftonnx/peftonnx/session"
)

func init() {
	register(&command{
		name:    "merge",
		args:    "MODEL -o OUT | BASE --adapter DIR|FILE -o OUT",
		summary: "fold LoRA into the base weights and save a model with exactly the base's nodes (prefix tuning cannot be merged)",
		detail: `
"merge MODEL -o OUT" folds every LoRA branch of an adapted model (from
inject or apply) into its weight, W' = W + s·A·B computed in float32 and
stored in W's type, and removes the branches: OUT has exactly the base
model's nodes and runs as fast, and its outputs match MODEL's to float
tolerance.

"merge BASE --adapter DIR|FILE -o OUT" does the same for a base model and a
saved adapter (HF PEFT directory or .onnx_adapter file), as apply followed
by merge would. An .onnx_adapter file whose parameters are named after
inputs of BASE (an export with its factors as inputs: lora_param_a,
lora_param_b) is merged where those inputs are the A and B of a branch
x·A·B added to a linear layer's x·W; the branch and the inputs go. A model whose LoRA factors are graph inputs (inject
--as-inputs) counts as its base: --adapter bakes an adapter into it.

Prefix tuning cannot be merged: a prefix is extra key/value positions fed
to attention where the KV cache goes, not a change to any weight, so no
model with the base's nodes computes what a prefixed model does. A
prefixed model (from prefix, or apply with a prefix adapter) and a prefix
adapter are an error; run or generate with them as they are ("peftonnx run
BASE --adapter DIR" applies a prefix adapter in memory).

A weight stored as int8 behind DequantizeLinear (a QDQ model) cannot take
the update exactly in int8, so merge refuses it; --dequantize replaces its
DequantizeLinear by a float weight holding the dequantized values plus
s·A·B, which matches the adapted model to float tolerance.

An int4 (MatMulNBits) layer cannot hold W + s·A·B exactly either, and
merge refuses it without one of two flags: --dequantize turns each adapted
int4 layer into a float MatMul reading
dequantize(W) + s·A·B (named as before quantization, …/MatMul): exact, at
the float size. --requantize rounds W + s·A·B back into the layer's own
int4 layout instead: OUT keeps the base's nodes and size, and merge prints
each layer's rounding error against the unmerged adapted layer, relative
to the weight and to the update s·A·B (near 1 or above, rounding undoes
much of what the adapter learned; keep the adapter separate then). A
DoRA layer merges as m·V/‖V‖ with V = dequantize(W) + s·A·B, into the
float MatMul or rounded back into int4 alike; only the float one keeps
‖V‖ (metadata peftonnx.dora_norms), which unmerge needs.

Each merged module is listed with its rank and scaling s. OUT keeps its
data in an external file (OUT.data) when the input does or when it passes
2 GiB, and is written to a temporary file and renamed.`,
		run: runMerge,
	})
}

func runMerge(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the merged model to `OUT` (required)")
	adapterPath := addAdapterFlag(fs, "fold this LoRA adapter into the base model")
	var quantized quantizedMergeFlags
	quantized.add(fs)
	model, e, err := cx.parseForEdit(args, "MODEL", out, adapterPath)
	if err != nil {
		return err
	}
	defer e.Close()
	m := e.m
	var ad *adapter.Adapter
	if *adapterPath != "" {
		if params, ok, err := session.InputParams(m, *adapterPath); err != nil {
			return err
		} else if ok {
			return mergeInputParams(cx, e, params, *adapterPath)
		}
		if ad, err = session.LoadAdapter(*adapterPath); err != nil {
			return err
		}
		if ad.Prefix != nil {
			return fmt.Errorf("merge: %s is %s, and prefix tuning cannot be merged into weights; %s: "+
				"apply it with \"peftonnx apply BASE --adapter %s -o OUT\", or run or generate with --adapter %s", *adapterPath, adapterKind(ad), prefixIsNotAWeight, *adapterPath, *adapterPath)
		}
	}
	if _, err := rewrite.PrefixSiteOf(m); err == nil {
		return fmt.Errorf("merge: %s carries a prefix, and prefix tuning cannot be merged into weights; %s: "+
			"run or generate with %s as it is, or save its prefix with export-adapter", model, prefixIsNotAWeight, model)
	}
	sites, noSites := rewrite.Sites(m) // an error when m carries no LoRA branch
	nodes := len(m.Graph().Node)

	mergeOpts := quantized.options()
	var merged []mergedModule
	var changed []rewrite.QuantizedMerge
	switch {
	case ad == nil && noSites != nil:
		return fmt.Errorf("%w; to merge an adapter into a base model, give --adapter DIR|FILE", noSites)
	case ad == nil:
		for _, s := range sites {
			if s.AsInputs {
				return fmt.Errorf("%s takes its LoRA factors as graph inputs, so it holds no adapter to merge: give --adapter DIR|FILE to bake one in", model)
			}
		}
		if changed, err = rewrite.MergeWith(m, mergeOpts...); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, s := range sites {
			if !seen[s.Module] {
				seen[s.Module] = true
				merged = append(merged, mergedModule{s.Module, s.Weight, s.R, s.Scale})
			}
		}
	default:
		if noSites == nil {
			// Only a model whose factors are inputs reduces to its base.
			for _, s := range sites {
				if !s.AsInputs {
					return fmt.Errorf("%s already carries LoRA branches: merge it without --adapter, or give its base model", model)
				}
			}
			if err := rewrite.Merge(m); err != nil {
				return err
			}
		}
		if changed, err = rewrite.MergeAdapterWith(m, ad, mergeOpts...); err != nil {
			return fmt.Errorf("merging %s: %w", *adapterPath, err)
		}
		for _, mod := range ad.Modules() {
			merged = append(merged, mergedModule{mod, "", ad.LoRA.RankFor(mod), ad.LoRA.ScalingFor(mod)})
		}
	}
	if err := e.save(); err != nil {
		return err
	}

	tw := tabwriter.NewWriter(cx.stdout, 0, 0, 2, ' ', 0)
	for _, mm := range merged {
		fmt.Fprintf(tw, "merged %s\tr=%d\ts=%s", mm.module, mm.r, strconv.FormatFloat(mm.scale, 'g', 6, 64))
		if mm.weight != "" {
			fmt.Fprintf(tw, "\tinto %s", mm.weight)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeQuantizedMerges(cx, changed); err != nil {
		return err
	}
	noun := "modules"
	if len(merged) == 1 {
		noun = "module"
	}
	fmt.Fprintf(cx.stdout, "wrote %s: %d LoRA %s merged, %d nodes (%d before)\n", *out, len(merged), noun, len(m.Graph().Node), nodes)
	return nil
}

// prefixIsNotAWeight is why merge refuses prefix tuning.
const prefixIsNotAWeight = "the prefix is a KV-cache input (key/value positions fed where past_key_values go), not a change to any weight"

// mergedModule is one line of merge's report.
type mergedModule struct {
	module, weight string
	r              int
	scale          float64
}

// quantizedMergeFlags are --dequantize and --requantize, which say how
// merge (and train --merged) folds an update into a quantized weight.
type quantizedMergeFlags struct{ dequantize, requantize bool }

func (q *quantizedMergeFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&q.dequantize, "dequantize", false, "merge into int8 weights behind DequantizeLinear (a QDQ model) or int4 MatMulNBits layers by making them float weights")
	fs.BoolVar(&q.requantize, "requantize", false, "round merged int4 (MatMulNBits) layers back into int4 instead of making them float")
}

// options returns the merge options the flags choose.
func (q quantizedMergeFlags) options() []rewrite.Option {
	var opts []rewrite.Option
	if q.dequantize {
		opts = append(opts, rewrite.Dequantize())
	}
	if q.requantize {
		opts = append(opts, rewrite.Requantize())
	}
	return opts
}

// writeQuantizedMerges reports the int4 layers that merge changed: made
// float, or requantized with their rounding error.
func writeQuantizedMerges(cx *context, qs []rewrite.QuantizedMerge) error {
	if len(qs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(cx.stdout, 0, 0, 2, ' ', 0)
	var errSq, updSq float64
	for _, q := range qs {
		if !q.Requantized {
			fmt.Fprintf(tw, "int4 %s\tnow float: %s reads %s\n", q.Module, q.Node, q.Weight)
			continue
		}
		fmt.Fprintf(tw, "int4 %s\trequantized: error %.3g of the weight, %.3g of the update (max %.3g)\n", q.Module, q.RelError, q.UpdateRelError, q.MaxAbsError)
		errSq += q.UpdateRelError * q.UpdateRelError
		updSq++
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if qs[0].Requantized {
		fmt.Fprintf(cx.stdout, "requantized %d int4 layers: rounding loses %.3g of the update (root mean square over layers); merge without --requantize for an exact float model\n", len(qs), math.Sqrt(errSq/updSq))
	} else {
		fmt.Fprintf(cx.stdout, "%d int4 layers became float MatMuls (exact); --requantize keeps them int4\n", len(qs))
	}
	return nil
}

// mergeInputParams merges the parameters of an ONNX Runtime adapter file
// whose names are inputs of e's model into its weights
// (rewrite.MergeInputs) and saves it.
func mergeInputParams(cx *context, e *editedModel, params map[string]*adapter.Tensor, adapterPath string) error {
	nodes := len(e.m.Graph().Node)
	if err := rewrite.MergeInputs(e.m, params); err != nil {
		return fmt.Errorf("merging %s: %w", adapterPath, err)
	}
	if err := e.save(); err != nil {
		return err
	}
	fmt.Fprintf(cx.stdout, "wrote %s: adapter %s (inputs %s) merged, %d nodes (%d before)\n", e.out, adapterPath, paramNames(params), len(e.m.Graph().Node), nodes)
	return nil
}
