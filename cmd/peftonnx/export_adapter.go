package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
)

func init() {
	register(&command{
		name:    "export-adapter",
		args:    "MODEL --out DIR|FILE [--format hf|onnx_adapter]",
		summary: "pull the LoRA adapter out of an adapted model and save it (save_pretrained)",
		detail: `
MODEL is a model that inject or apply adapted (and train trained). Its
adapter is its LoRA factors, the config it was injected with, and the base
tensors that train along (--bias, --trainable).

--format hf writes a HuggingFace PEFT directory: adapter_config.json and
adapter_model.safetensors, with keys base_model.model.<module>.lora_A.weight
[r, in] and lora_B.weight [out, r], which PEFT's from_pretrained and
"peftonnx apply" read. --format onnx_adapter writes an ONNX Runtime
.onnx_adapter file, with parameters <module>.lora_A.weight [in, r] and
<module>.lora_B.weight [r, out], the names and layout that ONNX Runtime's
LoRA API feeds to a model whose factors are graph inputs (inject
--as-inputs). That format holds no config, so each module's scaling
(alpha/r, or alpha/√r with rsLoRA) is folded into its lora_B; fused
projections (--enable-lora) need the config and can only be exported as hf.
Without --format, an --out that ends in .onnx_adapter selects onnx_adapter,
anything else hf.

The files are written to temporary names and renamed; MODEL is not changed.`,
		run: runExportAdapter,
	})
}

// The values of export-adapter's --format.
const (
	formatHF          = "hf"
	formatONNXAdapter = "onnx_adapter"
)

func runExportAdapter(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("out", "", "write the adapter to `DIR` (hf) or FILE.onnx_adapter (required)")
	format := fs.String("format", "", "`hf` (PEFT directory) or onnx_adapter; default from --out's name")
	pos, err := cx.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cx.usagef("want one MODEL, got %d arguments", len(pos))
	}
	if *out == "" {
		return cx.usagef("--out is required")
	}
	switch *format {
	case "":
		*format = formatHF
		if strings.HasSuffix(*out, adapter.ONNXAdapterExt) {
			*format = formatONNXAdapter
		}
	case formatHF, formatONNXAdapter:
	default:
		return cx.usagef("--format must be hf or onnx_adapter, got %q", *format)
	}
	st, statErr := os.Stat(*out)
	switch {
	case *format == formatHF && statErr == nil && !st.IsDir():
		return fmt.Errorf("--out %s is a file; --format hf writes a directory", *out)
	case *format == formatONNXAdapter && statErr == nil && st.IsDir():
		return fmt.Errorf("--out %s is a directory; --format onnx_adapter writes a file such as %s", *out, *out+"/adapter.onnx_adapter")
	}

	m, err := graph.Load(pos[0])
	if err != nil {
		return err
	}
	defer m.Close()
	if *format == formatONNXAdapter {
		if err := checkOutput(*out, m); err != nil {
			return err
		}
	}
	ad, err := rewrite.ExtractAdapter(m)
	if err != nil {
		return err
	}
	what := "HF PEFT directory"
	if *format == formatHF {
		err = adapter.SaveDir(*out, ad)
	} else {
		what = ".onnx_adapter"
		var f *adapter.ONNXAdapterFile
		if f, err = onnxAdapterFile(ad); err != nil {
			return fmt.Errorf("%s: %w", pos[0], err)
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
