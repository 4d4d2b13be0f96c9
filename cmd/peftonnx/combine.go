package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
	"github.com/peftonnx/peftonnx/session"
)

func init() {
	register(&command{
		name: "combine",
		args: "ADAPTER... -o OUT --method linear|cat|svd|ties|dare_linear|dare_ties|magnitude_prune " +
			"[--weights w1,w2,...] [--rank K] [--density D] [--seed N] [--majority-sign total|frequency] [--format hf|onnx_adapter|paddle]",
		summary: "combine several LoRA adapters of one base into one, as HF PEFT's add_weighted_adapter",
		detail: `
Each ADAPTER is an HF PEFT directory, a PaddleNLP directory or an
.onnx_adapter file. With weights w (default 1 each; negative subtracts) and
each adapter's own scaling s (alpha/r, alpha/√r with rsLoRA, after
rank_pattern and alpha_pattern), the methods compute, module by module:

  cat              A·B = Σ w·s·A_i·B_i exactly; the ranks add up.
  svd              the best rank-K approximation of Σ w·s·A_i·B_i
                   (--rank K; default the largest input rank).
  linear           HF PEFT's linear: (Σ ±√|w·s|·A_i)·(Σ √|w·s|·B_i), which
                   has cross terms: it is not the weighted sum of the deltas
                   (use cat for that). Ranks must agree.
  ties, dare_linear, dare_ties, magnitude_prune
                   HF PEFT's merge_utils rules on the A's and on the B's,
                   with the same weights as linear: --density D in (0, 1]
                   is the fraction of values kept (by magnitude, or at
                   random with --seed for dare_*, then divided by D); ties
                   and dare_ties keep the values that agree with the
                   elected sign (--majority-sign total, the sign of the sum,
                   or frequency, of the sum of signs) and average them.

One adapter is combined by linear whatever --method says, as HF PEFT does.
A module that only some adapters have is combined from those. The result
has scaling 1 (r = lora_alpha and no rsLoRA; HF PEFT copied use_rslora and
so scaled by √r), each module's own rank (a rank_pattern and alpha_pattern where it differs from
r), and the first adapter's other settings. DARE's masks come from a seeded
PCG, so they are reproducible but not HF PEFT's (torch.bernoulli).

Refused, with the file at fault: prefix adapters, DoRA, fused projections
(enable_lora_list), lora_bias, adapters that train biases or whole modules,
adapters of different base models (base_model_name_or_path, revision) or
whose module shapes disagree, and, for the methods that work on factors,
modules whose ranks disagree (cat and svd take any ranks).

--format hf writes an HF PEFT directory, onnx_adapter an .onnx_adapter file
(the default when OUT ends in .onnx_adapter), paddle PaddleNLP's directory,
which has no rank_pattern: modules of smaller rank are padded with zeros
there, which changes no delta. The files are written to temporary names and
renamed; the inputs are never changed.`,
		run: runCombine,
	})
}

func runCombine(cx *context, args []string) error {
	fs := cx.flags()
	out := fs.String("o", "", "write the combined adapter to `OUT`, a directory or FILE.onnx_adapter (required)")
	methodFlag := fs.String("method", "", "how to combine: `METHOD` linear, cat, svd, ties, dare_linear, dare_ties or magnitude_prune (required)")
	weightsFlag := fs.String("weights", "", "comma-separated `W1,W2,...`, one per adapter (default 1 each)")
	rank := fs.Int("rank", 0, "svd: the rank `K` of each module (default: the largest input rank)")
	density := fs.Float64("density", 0, "ties, dare_*, magnitude_prune: the fraction `D` of values kept, in (0, 1]")
	seed := fs.Uint64("seed", 0, "dare_*: seed `N` of the random masks")
	sign := fs.String("majority-sign", "", "ties, dare_ties: `total` (default) or frequency")
	format := fs.String("format", "", "`hf` (HF PEFT directory), onnx_adapter or paddle; default from OUT's name")
	pos, err := cx.parse(args)
	if err != nil {
		return err
	}
	given := cx.given()
	if len(pos) == 0 {
		return cx.usagef("give at least one ADAPTER")
	}
	if *out == "" {
		return cx.usagef("-o OUT is required")
	}
	if *methodFlag == "" {
		return cx.usagef("--method is required: linear, cat, svd, ties, dare_linear, dare_ties or magnitude_prune")
	}
	method, err := combine.ParseMethod(*methodFlag)
	if err != nil {
		return cx.usagef("--method: %w", err)
	}
	o := combine.Options{Method: method, Rank: *rank, Density: *density, Seed: *seed, MajoritySign: combine.MajoritySign(*sign)}
	if err := checkCombineFlags(cx, given, &o); err != nil {
		return err
	}
	if *weightsFlag != "" {
		if o.Weights, err = parseCombineWeights(*weightsFlag); err != nil {
			return cx.usagef("--weights: %w", err)
		}
		if len(o.Weights) != len(pos) {
			return cx.usagef("--weights has %d %s for %d adapters", len(o.Weights), combineNoun(len(o.Weights), "value", "values"), len(pos))
		}
	}
	if *format, err = adapterFormat(*format, *out, formatHF, formatONNXAdapter, formatPaddle); err != nil {
		return cx.usagef("%w", err)
	}
	if err := checkCombineOutput(*out, *format, pos); err != nil {
		return err
	}

	in := make([]combine.Input, len(pos))
	for i, path := range pos {
		ad, err := session.LoadAdapter(path)
		if err != nil {
			return err
		}
		in[i] = combine.Input{Name: path, Adapter: ad}
	}
	ad, err := combine.Adapters(in, o)
	if err != nil {
		return err
	}
	padded := false
	what := "HF PEFT directory"
	switch *format {
	case formatHF:
		err = adapter.SaveDir(*out, ad)
	case formatONNXAdapter:
		what = ".onnx_adapter"
		var f *adapter.ONNXAdapterFile
		if f, err = onnxAdapterFile(ad); err == nil {
			err = adapter.WriteONNXAdapter(*out, f)
		}
	case formatPaddle:
		what = "PaddleNLP directory"
		toSave := ad
		if ad.LoRA.RankPattern != nil {
			if toSave, err = combine.UniformRank(ad); err != nil {
				return err
			}
			padded = true
		}
		err = adapter.SavePaddleDir(*out, toSave)
		ad = toSave
	}
	if err != nil {
		return err
	}

	for i, x := range in {
		w := 1.0
		if o.Weights != nil {
			w = o.Weights[i]
		}
		fmt.Fprintf(cx.stdout, "%s: %s, weight %s\n", x.Name, describeCombineInput(x.Adapter), combineFloat(w))
	}
	effective := combine.EffectiveMethod(method, len(in))
	if effective != method {
		fmt.Fprintf(cx.stdout, "note: one adapter is combined by linear, whatever --method says, as HF PEFT does\n")
	}
	patterned := ""
	if n := len(ad.LoRA.RankPattern); n > 0 {
		patterned = fmt.Sprintf(" (rank_pattern for %d %s)", n, combineNoun(n, "module", "modules"))
	}
	if padded {
		patterned = " (modules of smaller rank padded with zeros: PaddleNLP's layout has no rank_pattern)"
	}
	n := len(ad.Weights)
	fmt.Fprintf(cx.stdout, "wrote %s (%s): %s of %d %s, %d LoRA %s, r=%d%s, scaling 1, %d params\n",
		*out, what, describeCombineMethod(effective, o), len(in), combineNoun(len(in), "adapter", "adapters"),
		n, combineNoun(n, "module", "modules"), ad.LoRA.R, patterned, ad.NumParams())
	return nil
}

// checkCombineFlags refuses flags that the method does not use, and a
// missing --density, as usage errors.
func checkCombineFlags(cx *context, given map[string]bool, o *combine.Options) error {
	m := o.Method
	prunes := m == combine.TIES || m == combine.DARELinear || m == combine.DARETIES || m == combine.MagnitudePrune
	switch {
	case given["rank"] && m != combine.SVD:
		return cx.usagef("--rank applies to svd only, not %s", m)
	case given["rank"] && o.Rank <= 0:
		return cx.usagef("--rank must be positive, got %d", o.Rank)
	case prunes && !given["density"]:
		return cx.usagef("%s needs --density D, the fraction of values kept, in (0, 1]", m)
	case !prunes && given["density"]:
		return cx.usagef("--density applies to ties, dare_linear, dare_ties and magnitude_prune, not %s", m)
	case prunes && (math.IsNaN(o.Density) || o.Density <= 0 || o.Density > 1):
		return cx.usagef("--density must be in (0, 1], got %v", o.Density)
	case given["seed"] && m != combine.DARELinear && m != combine.DARETIES:
		return cx.usagef("--seed applies to dare_linear and dare_ties only, not %s", m)
	case given["majority-sign"] && m != combine.TIES && m != combine.DARETIES:
		return cx.usagef("--majority-sign applies to ties and dare_ties only, not %s", m)
	}
	switch o.MajoritySign {
	case "", combine.SignTotal, combine.SignFrequency:
	default:
		return cx.usagef("--majority-sign must be total or frequency, got %q", o.MajoritySign)
	}
	return nil
}

// parseCombineWeights reads "0.7,0.3".
func parseCombineWeights(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		w, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || math.IsNaN(w) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("%q is not a finite number", f)
		}
		out = append(out, w)
	}
	return out, nil
}

// checkCombineOutput refuses an OUT of the wrong kind, and one that is an
// input: writing there would change it.
func checkCombineOutput(out, format string, inputs []string) error {
	st, err := os.Stat(out)
	if err != nil {
		return nil
	}
	switch {
	case format != formatONNXAdapter && !st.IsDir():
		return fmt.Errorf("-o %s is a file; --format %s writes a directory", out, format)
	case format == formatONNXAdapter && st.IsDir():
		return fmt.Errorf("-o %s is a directory; --format onnx_adapter writes a file such as %s", out, out+"/adapter.onnx_adapter")
	}
	for _, in := range inputs {
		if ist, err := os.Stat(in); err == nil && os.SameFile(st, ist) {
			return fmt.Errorf("-o %s is the input %s, which combine never changes: choose another -o", out, in)
		}
	}
	return nil
}

// describeCombineInput summarises an input: "LoRA r=8 alpha=16 rsLoRA, 4 modules,
// scaling 5.657".
func describeCombineInput(ad *adapter.Adapter) string {
	c := ad.LoRA
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, m := range ad.Modules() {
		s := c.ScalingFor(m)
		lo, hi = math.Min(lo, s), math.Max(hi, s)
	}
	scaling := combineFloat(lo)
	if hi != lo {
		scaling = combineFloat(lo) + " to " + combineFloat(hi) + " by module"
	}
	rs := ""
	if c.UseRSLoRA {
		rs = " rsLoRA"
	}
	n := len(ad.Weights)
	return fmt.Sprintf("LoRA r=%d alpha=%s%s, %d %s, scaling %s", c.R, combineFloat(c.Alpha), rs, n, combineNoun(n, "module", "modules"), scaling)
}

// describeCombineMethod names the method with the options it used.
func describeCombineMethod(m combine.Method, o combine.Options) string {
	sign := string(o.MajoritySign)
	if sign == "" {
		sign = string(combine.SignTotal)
	}
	switch m {
	case combine.SVD:
		if o.Rank == 0 {
			return "svd (rank: the largest input rank)"
		}
		return fmt.Sprintf("svd (rank %d)", o.Rank)
	case combine.TIES:
		return fmt.Sprintf("ties (density %s, majority sign %s)", combineFloat(o.Density), sign)
	case combine.DARETIES:
		return fmt.Sprintf("dare_ties (density %s, seed %d, majority sign %s)", combineFloat(o.Density), o.Seed, sign)
	case combine.DARELinear:
		return fmt.Sprintf("dare_linear (density %s, seed %d)", combineFloat(o.Density), o.Seed)
	case combine.MagnitudePrune:
		return fmt.Sprintf("magnitude_prune (density %s)", combineFloat(o.Density))
	}
	return string(m)
}

func combineFloat(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func combineNoun(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
