package rewrite

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
)

// Summary counts the parameters of an adapted model, as PaddleNLP's and HF
// PEFT's print_trainable_parameters do.
type Summary struct {
	// TrainableParams counts the values of the trainable tensors;
	// AllParams those of every floating-point initializer, LoRA factors
	// included and the branches' helper constants left out; a quantized
	// (MatMulNBits) weight counts its K·N values, as HF PEFT counts a
	// bitsandbytes 4-bit weight, and its scales and zero points not at all.
	TrainableParams, AllParams int64
	// LoRA names the A and B tensors (and DoRA's magnitudes), in site
	// order.
	LoRA []string
	// Extra names the base initializers that train too: biases
	// (TrainableBias) and the weights of TrainableModules. The trainer
	// turns them into graph inputs along with LoRA.
	Extra []string
	// LoftQ sums up init loftq's fit, nil for other inits.
	LoftQ *LoftQReport
}

// Trainable returns every trainable tensor's name: LoRA, then Extra.
func (s Summary) Trainable() []string {
	return append(slices.Clone(s.LoRA), s.Extra...)
}

// Percent returns 100·TrainableParams/AllParams, or 0 for an empty model.
func (s Summary) Percent() float64 {
	if s.AllParams == 0 {
		return 0
	}
	return 100 * float64(s.TrainableParams) / float64(s.AllParams)
}

// String formats the summary as HF PEFT prints it:
// "trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364".
func (s Summary) String() string {
	return fmt.Sprintf("trainable params: %s || all params: %s || trainable%%: %.4f",
		groupThousands(s.TrainableParams), groupThousands(s.AllParams), s.Percent())
}

// groupThousands formats n with commas between groups of three digits.
func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// summarize counts parameters for rec.
func summarize(m *graph.Model, rec record) (Summary, error) {
	helper := map[string]bool{}
	for _, name := range rec.Shared {
		helper[name] = true
	}
	var sum Summary
	seen := map[string]bool{}
	for _, s := range rec.Sites {
		for _, name := range s.Initializers {
			helper[name] = true
		}
		for _, name := range []string{s.A, s.B, s.Magnitude} {
			if name != "" && !seen[name] {
				seen[name] = true
				sum.LoRA = append(sum.LoRA, name)
			}
		}
	}
	for _, e := range rec.Trainable {
		sum.Extra = append(sum.Extra, e.Name)
	}
	sum.countParams(m, helper)
	return sum, nil
}

// countParams sets AllParams to the elements of m's floating-point
// initializers other than the helper constants (helper), and
// TrainableParams to those of the initializers that s.Trainable names.
func (s *Summary) countParams(m *graph.Model, helper map[string]bool) {
	trainable := map[string]bool{}
	for _, name := range s.Trainable() {
		trainable[name] = true
	}
	packed := quantizedParams(m)
	for _, t := range m.Proto.Graph.Initializer {
		n, isPacked := packed[t.Name]
		if !isPacked && (helper[t.Name] || !graph.TypeOf(t).IsFloat()) {
			continue
		}
		if !isPacked {
			n = graph.NumElements(t.Dims)
		}
		s.AllParams += n
		if trainable[t.Name] {
			s.TrainableParams += n
		}
	}
}

// trainableExtras returns the base initializers that train along with the
// LoRA factors: the biases that cfg.TrainableBias names ("lora": those of
// the adapted layers; "all": every floating-point initializer whose name
// says bias), and those that cfg.TrainableModules match. A pattern is
// matched against an initializer's name, and for a linear layer's weight
// and bias also against "<module>.weight" and "<module>.bias", so that
// PyTorch parameter names reach initializers that exporters renamed.
func trainableExtras(m *graph.Model, cfg *adapter.LoRAConfig, all, targets []Linear) []extraParam {
	alias := map[string][]string{}
	for _, l := range all {
		alias[l.Weight] = append(alias[l.Weight], l.Module+".weight")
		if l.Bias != "" {
			alias[l.Bias] = append(alias[l.Bias], l.Module+".bias")
		}
	}
	adapted := map[string]bool{}
	for _, l := range targets {
		if l.Bias != "" {
			adapted[l.Bias] = true
		}
	}
	var res []*regexp.Regexp
	for _, p := range cfg.TrainableModules {
		res = append(res, regexp.MustCompile("^(?:"+p+")$")) // checked by Validate
	}
	var out []extraParam
	for _, t := range m.Proto.Graph.Initializer {
		if !graph.TypeOf(t).IsFloat() || m.Input(t.Name) != nil {
			continue
		}
		keep := false
		switch cfg.TrainableBias {
		case adapter.BiasLoRA:
			keep = adapted[t.Name]
		case adapter.BiasAll:
			keep = strings.Contains(strings.ToLower(t.Name), "bias") || slices.ContainsFunc(alias[t.Name], func(a string) bool { return strings.HasSuffix(a, ".bias") })
		}
		for _, re := range res {
			if keep {
				break
			}
			keep = re.MatchString(t.Name) || slices.ContainsFunc(alias[t.Name], re.MatchString)
		}
		if keep {
			key := t.Name
			if as := alias[t.Name]; len(as) > 0 {
				key = as[0]
			}
			out = append(out, extraParam{Name: t.Name, Key: key})
		}
	}
	return out
}
