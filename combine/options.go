package combine

import (
	"math"
	"strings"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// Method is a way of combining adapters, named as PEFT's combination_type.
type Method string

// The methods. See the package documentation for what each computes.
const (
	Linear         Method = "linear"
	Cat            Method = "cat"
	SVD            Method = "svd"
	TIES           Method = "ties"
	DARELinear     Method = "dare_linear"
	DARETIES       Method = "dare_ties"
	MagnitudePrune Method = "magnitude_prune"
)

// Methods lists every Method in the order the documentation gives them.
var Methods = []Method{Linear, Cat, SVD, TIES, DARELinear, DARETIES, MagnitudePrune}

// MajoritySign says how ties and dare_ties elect the sign of an element.
type MajoritySign string

// The values of MajoritySign, as PEFT's majority_sign_method. The empty
// string means SignTotal.
const (
	SignTotal     MajoritySign = "total"     // the sign of the sum of the values
	SignFrequency MajoritySign = "frequency" // the sign of the sum of their signs
)

// Options say how to combine adapters.
type Options struct {
	Method Method
	// Weights holds one weight per input, in order; nil means 1 for each.
	// Weights may be negative (a weight of -1 subtracts an adapter).
	Weights []float64
	// Rank is the rank of each module for svd; 0 means the largest input
	// rank (r and the rank_pattern values), as PEFT's svd_rank=None.
	Rank int
	// Density is the fraction of values kept by ties, dare_linear,
	// dare_ties and magnitude_prune, in (0, 1]; 1 prunes nothing.
	Density float64
	// Seed seeds the masks of dare_linear and dare_ties.
	Seed uint64
	// MajoritySign is the sign election of ties and dare_ties.
	MajoritySign MajoritySign
}

// ParseMethod returns the Method named s.
func ParseMethod(s string) (Method, error) {
	for _, m := range Methods {
		if string(m) == s {
			return m, nil
		}
	}
	return "", errorf("unknown method %q: want one of %s", s, methodList())
}

func methodList() string {
	names := make([]string, len(Methods))
	for i, m := range Methods {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// prunes reports whether m takes a density.
func (m Method) prunes() bool {
	switch m {
	case TIES, DARELinear, DARETIES, MagnitudePrune:
		return true
	}
	return false
}

// elects reports whether m takes a majority sign.
func (m Method) elects() bool { return m == TIES || m == DARETIES }

// random reports whether m draws random masks.
func (m Method) random() bool { return m == DARELinear || m == DARETIES }

// EffectiveMethod returns the method that combining n adapters by m uses:
// m, or Linear for one adapter, as PEFT's add_weighted_adapter does.
func EffectiveMethod(m Method, n int) Method {
	if n == 1 {
		return Linear
	}
	return m
}

// check reports the first option that does not fit n inputs. Options that
// the method does not use must be left at their zero values, so that a
// mistake (a density for linear) is not silently ignored.
func (o *Options) check(n int) error {
	if _, err := ParseMethod(string(o.Method)); err != nil {
		return err
	}
	if n == 0 {
		return errorf("no adapters to combine")
	}
	if o.Weights != nil && len(o.Weights) != n {
		return errorf("%d weights for %d adapters: give one weight per adapter", len(o.Weights), n)
	}
	for i, w := range o.Weights {
		if math.IsNaN(w) || math.IsInf(w, 0) {
			return errorf("weight %d is %v: weights must be finite", i+1, w)
		}
	}
	switch {
	case o.Rank < 0:
		return errorf("rank must be positive, got %d", o.Rank)
	case o.Rank != 0 && o.Method != SVD:
		return errorf("a rank applies to svd only, not %s", o.Method)
	}
	if o.Method.prunes() {
		if math.IsNaN(o.Density) || o.Density <= 0 || o.Density > 1 {
			return errorf("%s needs a density in (0, 1], the fraction of values kept; got %v", o.Method, o.Density)
		}
	} else if o.Density != 0 {
		return errorf("a density applies to ties, dare_linear, dare_ties and magnitude_prune, not %s", o.Method)
	}
	if o.Seed != 0 && !o.Method.random() {
		return errorf("a seed applies to dare_linear and dare_ties only, not %s", o.Method)
	}
	switch o.MajoritySign {
	case "":
	case SignTotal, SignFrequency:
		if !o.Method.elects() {
			return errorf("a majority sign applies to ties and dare_ties only, not %s", o.Method)
		}
	default:
		return errorf("majority sign must be total or frequency, got %q", o.MajoritySign)
	}
	return nil
}

// weight returns the weight of input i.
func (o *Options) weight(i int) float64 {
	if o.Weights == nil {
		return 1
	}
	return o.Weights[i]
}

// sign returns the majority sign election, defaulting to SignTotal.
func (o *Options) sign() MajoritySign {
	if o.MajoritySign == "" {
		return SignTotal
	}
	return o.MajoritySign
}

// errorf returns an error prefixed with the package name, once (see
// package pkgerr): operands are wrapped with %w.
func errorf(format string, args ...any) error {
	return pkgerr.Errorf("combine", format, args...)
}
