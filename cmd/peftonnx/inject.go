package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/rewrite"
)

func init() {
	register(&command{
		name: "inject",
		args: "MODEL -o OUT --target RE [--target RE]... [--r 8] [--alpha 8] [--dropout 0] [--rslora] " +
			"[--bias none|lora|all] [--trainable RE]... [--as-inputs] [--seed N] [--init kaiming|gaussian] " +
			"[--dtype float32|float16|bfloat16] [--enable-lora q,k,v [--enable-lora ...] --head-dim D] [--lora-plus-scale S]",
		summary: "give the linear layers that --target selects LoRA branches and save the adapted model",
		detail: `
Each linear layer whose module name or node name a --target regex matches
in full (as Python's re.fullmatch: ".*q_proj.*" is the usual form) gets a
branch y = x·W + dropout(x)·A·B·s with s = alpha/r, or alpha/√r with
--rslora. A starts Kaiming-uniform (or Gaussian with --init gaussian) from
--seed, B at zero, so the adapted model computes what MODEL does. Run
"peftonnx inspect MODEL --target RE" first to see what a target selects; a
target that matches nothing is an error that lists the modules.

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

OUT keeps its data in an external file (OUT.data) when MODEL does or when
it passes 2 GiB. It is written to a temporary file and renamed, and MODEL is
never changed.`,
		run: runInject,
	})
}

func runInject(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the adapted model to `OUT` (required)")
	var targets, trainable, enable stringList
	fs.Var(&targets, "target", "adapt the linear layers whose module or node name fully matches `RE` (required; repeat for more)")
	r := fs.Int("r", 8, "LoRA rank `r`")
	alpha := fs.Float64("alpha", 8, "lora_alpha; the branch is scaled by `alpha`/r")
	dropout := fs.Float64("dropout", 0, "LoRA dropout `rate` in [0, 1), active in training only")
	rslora := fs.Bool("rslora", false, "scale by alpha/√r (rsLoRA) instead of alpha/r")
	bias := fs.String("bias", "none", "which biases train too: `none`, lora (the adapted layers') or all")
	fs.Var(&trainable, "trainable", "also train the weights of modules that fully match `RE` (repeatable)")
	asInputs := fs.Bool("as-inputs", false, "make A and B graph inputs of dynamic rank, with empty defaults")
	seed := fs.Uint64("seed", 0, "seed `N` for A's initial values")
	initKind := fs.String("init", "kaiming", "how A starts: `kaiming` (uniform) or gaussian")
	dtypeFlag := fs.String("dtype", "float32", "element type of A and B: `float32`, float16 or bfloat16")
	fs.Var(&enable, "enable-lora", "LoRA on parts of a fused projection only: `LIST` such as q,v or false,true,true")
	headDim := fs.Int("head-dim", 0, "head size `D` of fused projections (with --enable-lora)")
	loraPlus := fs.Float64("lora-plus-scale", 0, "LoRA+: record lora_plus_scale `S` in the adapter config; train then runs B at S times the learning rate (0: 1)")
	pos, err := cx.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cx.usagef("want one MODEL, got %d arguments", len(pos))
	}
	if *out == "" {
		return cx.usagef("-o OUT is required")
	}
	if len(targets) == 0 {
		return cx.usagef("--target is required: name the layers to adapt (see peftonnx inspect)")
	}

	cfg := adapter.DefaultLoRAConfig(targets...)
	cfg.R, cfg.Alpha, cfg.Dropout, cfg.UseRSLoRA = *r, *alpha, *dropout, *rslora
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
	switch i := adapter.LoRAInit(*initKind); i {
	case adapter.InitKaiming, adapter.InitGaussian:
		cfg.InitLoRAWeights = i
	default:
		return cx.usagef("--init must be kaiming or gaussian, got %q", *initKind)
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

	m, err := graph.Load(pos[0])
	if err != nil {
		return err
	}
	defer m.Close()
	if err := checkOutput(*out, m); err != nil {
		return err
	}
	external := hasExternalData(m)
	opts := []rewrite.Option{rewrite.WithSeed(*seed)}
	if *asInputs {
		opts = append(opts, rewrite.AsInputs())
	}
	sites, sum, err := rewrite.InjectLoRA(m, cfg, opts...)
	if err != nil {
		return err
	}
	if err := saveModel(m, *out, external); err != nil {
		return err
	}
	fmt.Fprintln(cx.stdout, sum)
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
	var modules []string
	seen := map[string]bool{}
	for _, s := range sites {
		if !seen[s.Module] {
			seen[s.Module] = true
			modules = append(modules, s.Module)
		}
	}
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

// hasExternalData reports whether any initializer of m keeps its data in
// an external file.
func hasExternalData(m *graph.Model) bool {
	for _, t := range m.Graph().Initializer {
		if t.DataLocation == onnxpb.TensorProto_EXTERNAL {
			return true
		}
	}
	return false
}

// inputFiles lists the files that m was read from: the model and its
// external data files.
func inputFiles(m *graph.Model) []string {
	var files []string
	if m.Path != "" {
		files = append(files, m.Path)
	}
	seen := map[string]bool{}
	for _, t := range m.Graph().Initializer {
		if t.DataLocation != onnxpb.TensorProto_EXTERNAL {
			continue
		}
		for _, e := range t.ExternalData {
			if e.Key == "location" && !seen[e.Value] {
				seen[e.Value] = true
				files = append(files, filepath.Join(m.Dir, e.Value))
			}
		}
	}
	return files
}

// checkOutput refuses an output model path that is a directory, or that
// would replace (itself or through its data file OUT.data) one of the
// files m was read from or one of others. Input files are never changed.
func checkOutput(out string, m *graph.Model, others ...string) error {
	if st, err := os.Stat(out); err == nil && st.IsDir() {
		return fmt.Errorf("output %s is a directory; want a model file name such as %s", out, filepath.Join(out, "model.onnx"))
	}
	if strings.HasSuffix(out, string(filepath.Separator)) || strings.HasSuffix(out, "/") {
		return fmt.Errorf("output %s names a folder (it ends in a slash); want a model file name such as %s", out, filepath.Join(out, "model.onnx"))
	}
	inputs := append(inputFiles(m), others...)
	for _, target := range []string{out, out + ".data"} {
		st, err := os.Stat(target)
		if err != nil {
			continue
		}
		for _, in := range inputs {
			if ist, err := os.Stat(in); err == nil && os.SameFile(st, ist) {
				return fmt.Errorf("output %s would overwrite the input %s: choose another -o", out, in)
			}
		}
	}
	return nil
}

// saveModel writes m to out atomically, with its tensors in out.data when
// external is set (or when it passes 2 GiB). It creates out's folder if
// needed, and removes what it created when the save fails.
func saveModel(m *graph.Model, out string, external bool) error {
	dir := filepath.Dir(out)
	created, err := makeDirs(dir)
	if err != nil {
		return fmt.Errorf("output %s: %w", out, err)
	}
	if err := m.Save(out, graph.SaveOptions{ExternalData: external}); err != nil {
		removeCreated(dir, created)
		return err
	}
	return nil
}

// makeDirs creates dir and its missing parents, and returns the topmost
// folder it created ("" when dir was there).
func makeDirs(dir string) (created string, err error) {
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	created = dir
	for p := filepath.Dir(created); p != created; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		created = p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return created, nil
}

// removeCreated removes dir and its parents up to created, the folder
// makeDirs returned; os.Remove leaves any that something has put files
// in since.
func removeCreated(dir, created string) {
	for p := dir; created != ""; p = filepath.Dir(p) {
		if os.Remove(p) != nil || p == created {
			break
		}
	}
}
