package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
)

func init() {
	register(&command{
		name:    "export-adapter",
		args:    "MODEL --out DIR|FILE [--format hf|paddle|onnx_adapter]",
		summary: "pull the LoRA or prefix adapter out of an adapted model and save it (save_pretrained)",
		detail: `
MODEL is a model that inject, prefix or apply adapted (and train trained).
The adapter of a LoRA model is its LoRA factors, the config it was
injected with, and the base tensors that train along (--bias,
--trainable). The adapter of a prefixed model is its prefix config
(peft_type PREFIX_TUNING) and its prompt_embeddings table, or with a
projection the encoder's input and weights.

--format hf writes a HuggingFace PEFT directory: adapter_config.json and
adapter_model.safetensors, with keys base_model.model.<module>.lora_A.weight
[r, in] and lora_B.weight [out, r], which PEFT's from_pretrained and
"peftonnx apply" read. --format paddle writes PaddleNLP's layout, as its
save_pretrained does: lora_config.json and lora_model_state.pdparams (a
pickled state dict, <module>.lora_A [in, r] and lora_B [r, out]), or for
a prefix prefix_config.json, prefix_model_state.pdparams and
pre_caches.npy; apply, merge and run read it back. --format onnx_adapter writes an ONNX Runtime
.onnx_adapter file, with parameters <module>.lora_A.weight [in, r] and
<module>.lora_B.weight [r, out], the names and layout that ONNX Runtime's
LoRA API feeds to a model whose factors are graph inputs (inject
--as-inputs). That format holds no config, so each module's scaling
(alpha/r, or alpha/√r with rsLoRA) is folded into its lora_B; fused
projections (--enable-lora) need the config and can only be exported as hf.
Without --format, an --out that ends in .onnx_adapter selects onnx_adapter,
anything else hf.

A prefix adapter is written as hf (or paddle): a HuggingFace PEFT directory with
adapter_config.json (peft_type PREFIX_TUNING, num_virtual_tokens,
num_layers, …) and prompt_embeddings [P, layers·2·kv_heads·head_dim] (and
prefix_encoder.transform.* with a projection) in
adapter_model.safetensors, which "peftonnx apply" and "peftonnx run
--adapter" read. --format onnx_adapter is an error for it: an .onnx_adapter
file holds named tensors and no config, and ONNX Runtime feeds it to LoRA
inputs only, so the prefix's tokens, layers and heads would be lost. Where
MODEL took the prefix in place of its past inputs (prefix --replace-past),
the directory does not record that: apply it with --replace-past to do the
same.

The files are written to temporary names and renamed; MODEL is not changed.`,
		run: runExportAdapter,
	})
}

// adapterFormat returns the --format of a command that writes an adapter
// to out: format where given, else onnx_adapter for an out that ends in
// .onnx_adapter and hf for any other. A format not in allowed is an error.
func adapterFormat(format, out string, allowed ...string) (string, error) {
	if format == "" {
		if strings.HasSuffix(out, adapter.ONNXAdapterExt) {
			return formatONNXAdapter, nil
		}
		return formatHF, nil
	}
	if !slices.Contains(allowed, format) {
		n := len(allowed)
		return "", fmt.Errorf("--format must be %s or %s, got %q", strings.Join(allowed[:n-1], ", "), allowed[n-1], format)
	}
	return format, nil
}

func runExportAdapter(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("out", "", "write the adapter to `DIR` (hf, paddle) or FILE.onnx_adapter (required)")
	format := fs.String("format", "", "`hf` (PEFT directory), paddle (PaddleNLP directory) or onnx_adapter; default from --out's name")
	model, err := cx.parseOne(args, "MODEL", "--out")
	if err != nil {
		return err
	}
	if *format, err = adapterFormat(*format, *out, formatHF, formatPaddle, formatONNXAdapter); err != nil {
		return cx.usagef("%w", err)
	}
	st, statErr := os.Stat(*out)
	switch {
	case *format != formatONNXAdapter && statErr == nil && !st.IsDir():
		return fmt.Errorf("--out %s is a file; --format %s writes a directory", *out, *format)
	case *format == formatONNXAdapter && statErr == nil && st.IsDir():
		return fmt.Errorf("--out %s is a directory; --format onnx_adapter writes a file such as %s", *out, *out+"/adapter.onnx_adapter")
	}

	m, err := graph.Load(model)
	if err != nil {
		return err
	}
	defer m.Close()
	ad, err := rewrite.Extract(m)
	if errors.Is(err, rewrite.ErrNoAdapter) {
		return fmt.Errorf("%w: give a model from inject, prefix or apply", err)
	}
	if err != nil {
		return err
	}
	if ad.Prefix != nil {
		return exportPrefix(cx, m, ad, model, *out, *format)
	}
	if *format == formatONNXAdapter {
		if err := checkOutput(*out, m); err != nil {
			return err
		}
	}
	var what string
	if *format != formatONNXAdapter {
		what, _, err = saveAdapterDir(*out, ad, *format)
	} else {
		what = ".onnx_adapter"
		var f *adapter.ONNXAdapterFile
		if f, err = onnxAdapterFile(ad); err != nil {
			return fmt.Errorf("%s: %w", model, err)
		}
		err = adapter.WriteONNXAdapter(*out, f)
	}
	if err != nil {
		return err
	}
	modules := ad.Modules()
	noun := "modules"
	if len(modules) == 1 {
		noun = "module"
	}
	extra := ""
	if n := len(ad.Extra); n > 0 {
		extra = fmt.Sprintf(" and %d trained base tensors", n)
	}
	fmt.Fprintf(cx.stdout, "wrote %s (%s): %d LoRA %s, r=%d, alpha=%g%s, %d params\n",
		*out, what, len(modules), noun, ad.LoRA.R, ad.LoRA.Alpha, extra, ad.NumParams())
	return nil
}

// exportPrefix writes ad, the prefix adapter of m, the model at path, to
// the HuggingFace PEFT directory dir, the one format that holds a prefix.
func exportPrefix(cx *context, m *graph.Model, ad *adapter.Adapter, path, dir, format string) error {
	if format == formatONNXAdapter {
		return fmt.Errorf("%s carries a prefix (prefix tuning), which --format onnx_adapter cannot hold: an .onnx_adapter file has named tensors and no config (tokens, layers, KV heads), and ONNX Runtime feeds it to LoRA inputs only; export it with --format hf or paddle", path)
	}
	site, err := rewrite.PrefixSiteOf(m)
	if err != nil {
		return err
	}
	what, _, err := saveAdapterDir(dir, ad, format)
	if err != nil {
		return err
	}
	fmt.Fprintf(cx.stdout, "wrote %s (%s): prefix of %s, %d params\n", dir, what, prefixShape(site.Config), ad.NumParams())
	if site.ReplacedPast {
		fmt.Fprintf(cx.stdout, "note: %s takes the prefix in place of its past inputs, which the adapter does not record: apply it with --replace-past to do the same\n", path)
	}
	return nil
}

// onnxAdapterFile returns the .onnx_adapter content of ad: that format has
// no config, so each module's B carries its scaling, as the B that is fed
// to a model whose factors are graph inputs does (rewrite.Feeds).
func onnxAdapterFile(ad *adapter.Adapter) (*adapter.ONNXAdapterFile, error) {
	folded := adapter.NewLoRA(*ad.LoRA)
	for _, mod := range ad.Modules() {
		if enable := ad.LoRA.EnableFor(mod); enable != nil {
			return nil, fmt.Errorf("module %q is a fused projection (enable_lora_list %v), which an .onnx_adapter file cannot describe: export it with --format hf", mod, enable)
		}
		w := ad.Weights[mod]
		b := w.B.Clone()
		s := float32(ad.LoRA.ScalingFor(mod))
		for i := range b.Data {
			b.Data[i] *= s
		}
		folded.Weights[mod] = adapter.LoRAWeights{A: w.A, B: b}
	}
	folded.Extra = ad.Extra
	return adapter.NewONNXAdapterFile(folded)
}
