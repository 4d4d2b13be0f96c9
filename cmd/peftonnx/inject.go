package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/rewrite"
)

func init() {
	register(&command{
		name: "inject",
		args: "MODEL -o OUT --target RE [--target RE]... | --modules q_proj,v_proj|all-linear [--r 8] [--alpha 8] [--dropout 0] [--rslora] [--dora] " +
			"[--bias none|lora|all] [--trainable RE]... [--as-inputs] [--seed N] [--init kaiming|gaussian|pissa|pissa_niter_N|olora|loftq [--bits 4 --block-size 32 --loftq-iter 1]] " +
			"[--dtype float32|float16|bfloat16] [--enable-lora q,k,v [--enable-lora ...] --head-dim D] [--lora-plus-scale S]",
		summary: "give the layers (linear, embedding, convolution) that --target selects LoRA branches and save the adapted model",
		detail: `
Each linear layer whose module name or node name a --target regex matches
in full (as Python's re.fullmatch: ".*q_proj.*" is the usual form) gets a
branch y = x·W + dropout(x)·A·B·s with s = alpha/r, or alpha/√r with
--rslora. With --dora (HF PEFT's use_dora) each output feature j is
rescaled to a trained magnitude m[j], y = x·W' with W'[:, j] = m[j]·V[:, j]/‖V[:, j]‖
and V = W + s·A·B; m starts at W's column norms. An embedding's norm is
per embedding dimension over the vocabulary, a convolution's per output
channel over its input channels and kernel, as HF PEFT takes them. DoRA
takes QDQ weights (their dequantized values are W) and int4 MatMulNBits
layers, whose norm takes Aᵀ·W from the layer's own MatMulNBits node,
fed the activation's rows with Aᵀ's appended: no float copy of W is made,
nor a second pre-packed one. --init pissa (or
pissa_niter_N) starts A and B from W's principal singular vectors, --init
olora from its QR decomposition, and leaves W − s·A·B in the weight; the
adapter that export-adapter and train write is then the plain rank-2r
delta on the original W (HF PEFT's path_initial_model_for_weight_conversion).
--init loftq (LoftQ, for a quantized base) alternates --loftq-iter times
deq = dequantize(quantize(W − s·A·B)) and s·A·B = the rank-r SVD of W − deq,
and leaves deq in the weight, so that deq + s·A·B is closer to W than the
quantized weight alone; with --bits or --block-size the base is written
as the int4 (2-, 8-bit) MatMulNBits layer of Q(W − s·A·B) that "quantize"
writes, otherwise as the float deq (4 bits in blocks of 32). An int4 model
is refused: LoftQ needs the float W. Its exported adapter is the rank-2r
delta, exact on deq + s·A₀·B₀ and within LoftQ's remaining error of the
adapted model on the original W. A starts Kaiming-uniform (or Gaussian with --init gaussian) from
--seed, B at zero, so the adapted model computes what MODEL does. Run
"peftonnx inspect MODEL --target RE" first to see what a target selects; a
target that matches nothing is an error that lists the modules.

Embeddings (a Gather of a table: y = W[ids] + A[ids]·B·s, A zero and B
normal at first, as HF PEFT starts them) and Conv1d/Conv2d layers (A a
Conv with the layer's kernel, strides, pads and dilations, B a 1×1 Conv)
are selected by their module names the same way; --modules all-linear
leaves them out. A linear layer whose weight is int8 behind
DequantizeLinear (a QDQ model) takes the branch on its float side. Layers
inside If, Loop and Scan subgraphs are not adapted; inspect names them.

--modules q_proj,v_proj names modules as HF PEFT's target_modules list
does: a module called q_proj, or whose name ends in ".q_proj"
(attention.self.query matches bert.encoder.layer.0.attention.self.query).
--modules all-linear adapts every linear layer but the output head (the
LM head or classifier whose output is the model's). --modules and
--target may be given together; a layer either selects is adapted.

--bias lora also trains the biases of the adapted layers, --bias all every
bias, and --trainable RE the weights of the modules RE matches (PEFT's
modules_to_save). The summary line counts them.

--as-inputs makes A and B graph inputs of dynamic rank with empty
defaults: fed nothing the model is MODEL; "peftonnx run OUT --adapter A"
feeds adapter A. This is the layout that ONNX Runtime's LoRA API uses.

--enable-lora gives fused projections (GPT-2's c_attn) LoRA on some of
their parts only, as PaddleNLP's enable_lora_list: "q,v" (of q, k, v) or
flags such as "false,true,true". --head-dim says how heads interleave in
the fused output. Given once, the list applies to every target; given once
per --target, the i-th list belongs to the i-th target, and "none" keeps
that target plain.

` + modelOutputNote,
		run: runInject,
	})
}

func runInject(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the adapted model to `OUT` (required)")
	var trainable, enable stringList
	tf := addTargetFlags(fs, "adapt")
	r := fs.Int("r", 8, "LoRA rank `r`")
	alpha := fs.Float64("alpha", 8, "lora_alpha; the branch is scaled by `alpha`/r")
	dropout := fs.Float64("dropout", 0, "LoRA dropout `rate` in [0, 1), active in training only")
	rslora := fs.Bool("rslora", false, "scale by alpha/√r (rsLoRA) instead of alpha/r")
	dora := fs.Bool("dora", false, "DoRA (HF PEFT's use_dora): a trained magnitude per output feature times the column-normalised W + s·A·B; linear (float, QDQ or int4), embedding and convolution layers")
	bias := fs.String("bias", "none", "which biases train too: `none`, lora (the adapted layers') or all")
	fs.Var(&trainable, "trainable", "also train the weights of modules that fully match `RE` (repeatable)")
	asInputs := fs.Bool("as-inputs", false, "make A and B graph inputs of dynamic rank, with empty defaults")
	seed := fs.Uint64("seed", 0, "seed `N` for A's initial values")
	initKind := fs.String("init", "kaiming", "how A and B start: `kaiming` (uniform A), gaussian, pissa, pissa_niter_N, olora (from the weight, which keeps the residual) or loftq (the weight quantized, A and B from what that lost)")
	bits := fs.Int("bits", 0, "--init loftq: write the base as MatMulNBits of `N` bits (2, 4 or 8; 4 where only --block-size is given)")
	blockSize := fs.Int("block-size", 0, "--init loftq: write the base as MatMulNBits with blocks of `N` input features (a power of two ≥ 16; 32 where only --bits is given)")
	loftqIter := fs.Int("loftq-iter", 1, "--init loftq: LoftQ's alternating steps `T` (HF PEFT's loftq_iter)")
	dtypeFlag := fs.String("dtype", "float32", "element type of A and B: `float32`, float16 or bfloat16")
	fs.Var(&enable, "enable-lora", "LoRA on parts of a fused projection only: `LIST` such as q,v or false,true,true")
	headDim := fs.Int("head-dim", 0, "head size `D` of fused projections (with --enable-lora)")
	loraPlus := fs.Float64("lora-plus-scale", 0, "LoRA+: record lora_plus_scale `S` in the adapter config; train then runs B at S times the learning rate (0: 1)")
	model, err := cx.parseOne(args, "MODEL", "-o OUT")
	if err != nil {
		return err
	}
	targets := tf.patterns()
	if len(targets) == 0 {
		return cx.usagef("--target or --modules is required: name the layers to adapt (see peftonnx inspect)")
	}

	cfg := adapter.DefaultLoRAConfig(targets...)
	cfg.R, cfg.Alpha, cfg.Dropout, cfg.UseRSLoRA = *r, *alpha, *dropout, *rslora
	cfg.UseDoRA = *dora
	cfg.TrainableModules = trainable
	cfg.HeadDim = *headDim
	cfg.LoRAPlusScale = *loraPlus
	switch {
	case *r <= 0:
		return cx.usagef("--r must be positive, got %d", *r)
	case !(*alpha > 0) || math.IsInf(*alpha, 0):
		return cx.usagef("--alpha must be positive, got %v", *alpha)
	case !(*dropout >= 0 && *dropout < 1):
		return cx.usagef("--dropout must be in [0, 1), got %v", *dropout)
	case *headDim < 0:
		return cx.usagef("--head-dim must not be negative, got %d", *headDim)
	}
	switch b := adapter.Bias(*bias); b {
	case adapter.BiasNone, adapter.BiasLoRA, adapter.BiasAll:
		cfg.TrainableBias = b
	default:
		return cx.usagef("--bias must be none, lora or all, got %q", *bias)
	}
	switch i := adapter.LoRAInit(*initKind); {
	case i == adapter.InitKaiming || i == adapter.InitGaussian || i.FromWeights():
		cfg.InitLoRAWeights = i
	default:
		return cx.usagef("--init must be kaiming, gaussian, pissa, pissa_niter_N, olora or loftq, got %q", *initKind)
	}
	loftqSet := false
	fs.Visit(func(f *flag.Flag) {
		loftqSet = loftqSet || f.Name == "bits" || f.Name == "block-size" || f.Name == "loftq-iter"
	})
	if loftqSet && cfg.InitLoRAWeights != adapter.InitLoftQ {
		return cx.usagef("--bits, --block-size and --loftq-iter belong to --init loftq")
	}
	if *loftqIter < 1 {
		return cx.usagef("--loftq-iter must be at least 1, got %d", *loftqIter)
	}
	if cfg.DType, err = parseAdapterDType(*dtypeFlag); err != nil {
		return cx.usagef("--dtype: %w", err)
	}
	if cfg.EnableLoRAList, err = parseEnableLoRA(enable, len(targets)); err != nil {
		return cx.usagef("%w", err)
	}
	if !cfg.EnableLoRAList.IsZero() && *headDim == 0 {
		return cx.usagef("--enable-lora needs --head-dim")
	}

	e, err := loadForEdit(model, *out)
	if err != nil {
		return err
	}
	defer e.Close()
	opts := []rewrite.Option{rewrite.WithSeed(*seed)}
	if *asInputs {
		opts = append(opts, rewrite.AsInputs())
	}
	if cfg.InitLoRAWeights == adapter.InitLoftQ {
		opts = append(opts, rewrite.WithLoftQ(rewrite.LoftQOptions{Bits: *bits, BlockSize: *blockSize, Iterations: *loftqIter, Pack: *bits != 0 || *blockSize != 0}))
	}
	sites, sum, err := rewrite.InjectLoRA(e.m, cfg, opts...)
	if err != nil {
		return err
	}
	if err := e.save(); err != nil {
		return err
	}
	fmt.Fprintln(cx.stdout, sum)
	if q := sum.LoftQ; q != nil {
		base := "float base"
		if q.Options.Pack {
			base = "MatMulNBits base"
		}
		fmt.Fprintf(cx.stdout, "LoftQ (%d bits, blocks of %d, %d iterations, %s): relative error of base + s·A·B against the float weights %.4g, plain round to nearest %.4g (%d layers)\n",
			q.Options.Bits, q.Options.BlockSize, q.Options.Iterations, base, q.RelError, q.PlainRelError, q.Layers)
	}
	fmt.Fprintf(cx.stdout, "wrote %s: LoRA r=%d on %s%s\n", *out, cfg.R, countLayers(sites), inputsNote(*asInputs))
	return nil
}

// parseAdapterDType parses --dtype: the element types that LoRA factors
// and prefix parameters may have.
func parseAdapterDType(s string) (dtype.Type, error) {
	d, err := dtype.Parse(s)
	if err == nil {
		switch d {
		case dtype.Float32, dtype.Float16, dtype.BFloat16:
			return d, nil
		}
	}
	return dtype.Undefined, fmt.Errorf("want float32, float16 or bfloat16, got %q", s)
}

// parseEnableLoRA turns the --enable-lora values into an enable list: one
// value is the flat form, one per target the per-target form ("none" for a
// plain target). A value lists the enabled parts of q, k and v by letter
// ("q,v"), or gives one flag per part ("false,true,true" or "0,1,1").
func parseEnableLoRA(values []string, targets int) (adapter.EnableLoRAList, error) {
	var e adapter.EnableLoRAList
	if len(values) == 0 {
		return e, nil
	}
	if len(values) > 1 && len(values) != targets {
		return e, fmt.Errorf("--enable-lora is given %d times for %d --target: give it once for every target, or once per --target (\"none\" for a plain one)", len(values), targets)
	}
	lists := make([][]bool, len(values))
	for i, v := range values {
		if len(values) > 1 && strings.EqualFold(strings.TrimSpace(v), "none") {
			continue
		}
		flags, err := parseEnableList(v)
		if err != nil {
			return e, fmt.Errorf("--enable-lora %q: %w", v, err)
		}
		lists[i] = flags
	}
	if len(values) == 1 {
		e.All = lists[0]
	} else {
		e.PerTarget = lists
	}
	return e, nil
}

// parseEnableList parses one --enable-lora value.
func parseEnableList(v string) ([]bool, error) {
	parts := strings.Split(v, ",")
	letters := []bool{false, false, false}
	byLetter, byFlag := true, true
	flags := make([]bool, len(parts))
	for i, p := range parts {
		p = strings.ToLower(strings.TrimSpace(p))
		switch p {
		case "q", "k", "v":
			letters[strings.Index("qkv", p)] = true
			byFlag = false
		case "true", "1", "t":
			flags[i] = true
			byLetter = false
		case "false", "0", "f":
			byLetter = false
		default:
			return nil, fmt.Errorf("%q is neither q, k, v nor a flag (true, false, 1, 0)", p)
		}
	}
	switch {
	case byLetter:
		return letters, nil
	case byFlag:
		for _, f := range flags {
			if f {
				return flags, nil
			}
		}
		return nil, errors.New("enables no part")
	}
	return nil, errors.New("mixes letters and flags")
}

// countLayers describes the layers that sites adapt: "4 layers (q_proj,
// v_proj, …)".
func countLayers(sites []rewrite.Site) string {
	modules := rewrite.SiteModules(sites)
	noun := "layers"
	if len(modules) == 1 {
		noun = "layer"
	}
	shown := modules
	if len(shown) > 3 {
		shown = append(shown[:3:3], "…")
	}
	return fmt.Sprintf("%d %s (%s)", len(modules), noun, strings.Join(shown, ", "))
}

// inputsNote says that the factors are graph inputs.
func inputsNote(asInputs bool) string {
	if asInputs {
		return "; A and B are graph inputs (run OUT --adapter A feeds them)"
	}
	return ""
}
